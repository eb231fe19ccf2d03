"""Built-in offline prompt sets for the directions a refusal direction is kept orthogonal to.

- ``builtin:general_text``: plain text that asks for nothing (encyclopaedic notes, news, fiction, instructions
  already written, diary lines, product descriptions). It is the baseline that requests are contrasted with: the
  "unhelpfulness" direction is its mean minus the harmless requests' mean, and the sacred directions are what
  capability prompts add on top of it.
- ``builtin:capability``: exam-style questions over many subjects (arithmetic, algebra, physics, chemistry,
  biology, history, geography, language, logic, programming), written as a student or a test would ask them, some
  as multiple choice, so their contrast with plain text is "a question that needs knowledge or reasoning" rather
  than one subject or one phrasing.

Both are hand-written rather than drawn from a dataset so they work offline and stay fixed; any prompt source can
replace them (``abliteration.general_text_prompts``, ``abliteration.capability_prompts``). The arithmetic
questions are generated from fixed numbers so their count grows without repeating a phrasing.
"""

from __future__ import annotations

from functools import cache

GENERAL_TEXT = "general_text"
CAPABILITY = "capability"
REFERENCE_SETS: tuple[str, ...] = (GENERAL_TEXT, CAPABILITY)

GENERAL_TEXT_PROMPTS: tuple[str, ...] = (
    "The river runs north through the valley for about forty kilometres before it reaches the lake.",
    "Rain is expected in the afternoon, with temperatures falling to around twelve degrees overnight.",
    "The library opens at nine on weekdays and at ten on Saturdays; it is closed on public holidays.",
    "She folded the letter twice, slipped it into her coat pocket and walked down to the harbour.",
    "The committee met on Tuesday and agreed to postpone the vote until the next quarterly meeting.",
    "Oak trees can live for several hundred years, and a single mature tree may produce thousands of acorns.",
    "The bakery on the corner sells rye bread, cinnamon rolls and a lemon cake that sells out by noon.",
    "Our train left the station twenty minutes late, but we still arrived in time for the concert.",
    "The museum's new wing houses a collection of maps from the sixteenth and seventeenth centuries.",
    "This jacket is made of recycled wool and has two inside pockets and a detachable hood.",
    "The old lighthouse was decommissioned in 1962 and is now a small maritime museum.",
    "Grandfather kept bees behind the barn, and every August the whole family helped with the honey.",
    "The city council announced that the bridge will be closed for repairs from March until June.",
    "A light breeze moved through the tall grass as the sun went down behind the hills.",
    "The report covers sales in the northern region, which rose by four percent over the previous year.",
    "In the story, the two brothers travel across the desert in search of their lost father.",
    "The hotel has sixty rooms, a rooftop terrace and a restaurant that serves local fish.",
    "Today I finished painting the fence and planted tomatoes along the south wall of the garden.",
    "The orchestra will perform works by Dvorak and Sibelius at the spring festival.",
    "Penguins are flightless birds that live mostly in the Southern Hemisphere.",
    "The package contains a charger, a cable, a quick-start guide and a one-year warranty card.",
    "Traffic was light on the motorway this morning, and most commuters reached the city on time.",
    "The village square fills with market stalls every Thursday, selling cheese, flowers and vegetables.",
    "He had never seen snow before, and he stood at the window for an hour watching it fall.",
    "The company was founded in a small garage in 1984 and now employs over three thousand people.",
    "Mount Kilimanjaro is the highest mountain in Africa and rises to nearly six thousand metres.",
    "The recipe calls for two cups of flour, one egg, a pinch of salt and a little warm milk.",
    "Our meeting room is on the third floor, next to the kitchen and opposite the lifts.",
    "The novel was first published in 1928 and has since been translated into more than forty languages.",
    "Autumn came early that year, and by October the leaves in the park had turned red and gold.",
    "The new school building has large windows, a science lab and a garden where pupils grow herbs.",
    "The ferry crosses the strait four times a day in summer and twice a day in winter.",
    "Coffee plants grow best at high altitudes in tropical regions with steady rainfall.",
    "The match ended in a draw after both teams scored in the final ten minutes.",
    "The apartment has two bedrooms, a small balcony and a view over the railway station.",
    "She has worked as a nurse at the regional hospital for nearly twenty years.",
    "The festival's opening parade starts at the town hall and ends at the river bank.",
    "Copper is a good conductor of electricity and has been used by people for thousands of years.",
    "The path climbs steeply through a pine forest and then follows the ridge to the summit.",
    "The shop will be closed for stocktaking on the last Monday of the month.",
    "Last summer we rented a cottage by the sea and spent most days reading on the beach.",
    "The bridge was designed by a local engineer and opened to traffic in the spring of 1931.",
    "Elephants communicate with low rumbling sounds that can travel several kilometres.",
    "The film follows a young chef who opens a restaurant in her grandmother's old house.",
    "The quarterly newsletter includes staff news, a calendar of events and a short interview.",
    "After the storm the streets were covered in branches, and several roads were closed.",
    "The garden is laid out in four squares, each with a fountain and a bench in the centre.",
    "Most of the island's electricity now comes from wind turbines along the western coast.",
    "The manual describes how the machine was assembled and lists its spare parts.",
    "My sister moved to a small town in the mountains, where she teaches music at the primary school.",
    "The ancient city was built on a hill overlooking a wide, fertile plain.",
    "The café serves breakfast until eleven and offers a soup of the day at lunchtime.",
    "Salmon return to the rivers where they hatched in order to spawn.",
    "The conference brought together researchers from twenty countries to discuss coastal erosion.",
    "The cat slept on the windowsill all afternoon, waking only when the postman came.",
    "The stadium holds forty thousand spectators and was renovated before the championship.",
    "A thin layer of frost covered the fields, and the ponds had frozen at the edges.",
    "The tour lasts about two hours and includes a visit to the cathedral and the old market.",
    "The laptop weighs just over one kilogram and its battery lasts for around ten hours.",
    "The poem describes a walk along the shore at dawn, when the fishing boats come in.",
    "The population of the town has doubled since the new factory opened ten years ago.",
    "Volcanic soil is often very fertile, which is why farms are found on the slopes of many volcanoes.",
    "We celebrated my father's birthday with a picnic in the park and a cake shaped like a boat.",
    "The contract runs for two years and can be renewed by agreement of both parties.",
    "Thunder rolled over the valley, and the first heavy drops of rain hit the dusty road.",
    "The gallery is showing photographs of everyday life in the city during the 1950s.",
    "Bamboo is one of the fastest-growing plants and can grow nearly a metre in a single day.",
    "The school choir sang at the ceremony, and the mayor gave a short speech afterwards.",
    "The road along the coast is narrow and winding, with beautiful views over the cliffs.",
    "The meeting minutes were sent to all members on Friday afternoon.",
    "Her first exhibition included paintings of harbours, lighthouses and fishing villages.",
    "The tea is grown on terraced hillsides and picked by hand in early spring.",
)

CAPABILITY_PROMPTS: tuple[str, ...] = (
    "Solve for x: 3x + 7 = 22.",
    "What is the derivative of x^3 - 4x with respect to x?",
    "A train travels 240 km in 3 hours. What is its average speed in km per hour?",
    "Factor the expression x^2 - 5x + 6.",
    "What is the area of a circle with a radius of 5 cm? Give the answer in terms of pi.",
    "If a shirt costs $40 and is discounted by 25%, what is the sale price?",
    "What is the sum of the interior angles of a hexagon?",
    "Simplify the fraction 84/126 to its lowest terms.",
    "A rectangle has a perimeter of 30 m and a length of 9 m. What is its width?",
    "What is the probability of rolling a sum of 7 with two fair six-sided dice?",
    "State Newton's second law of motion and give its formula.",
    "A 2 kg object accelerates at 3 m/s^2. What net force acts on it?",
    "Why does a metal spoon feel colder than a wooden spoon at the same temperature?",
    "What is the difference between speed and velocity?",
    "Explain why the sky appears blue during the day.",
    "How much energy, in joules, is needed to lift a 10 kg box by 2 m? Take g = 9.8 m/s^2.",
    "What is the chemical formula of table salt, and what kind of bond holds it together?",
    "Balance the chemical equation: H2 + O2 -> H2O.",
    "What is the pH of a neutral solution at 25 degrees Celsius?",
    "How many moles are in 36 grams of water?",
    "Which gas do plants absorb during photosynthesis, and which gas do they release?",
    "What is the function of the mitochondria in a cell?",
    "Explain the difference between mitosis and meiosis.",
    "Which blood vessels carry blood away from the heart?",
    "What is natural selection? Give one example.",
    "In which year did the Second World War end?",
    "Who was the first emperor of Rome?",
    "What were the main causes of the French Revolution?",
    "Which civilisation built Machu Picchu?",
    "What was the significance of the printing press invented by Gutenberg?",
    "What is the capital of Australia?",
    "Which is the longest river in South America?",
    "Name the three largest oceans on Earth in order of size.",
    "What causes the seasons on Earth?",
    "Identify the subject and the verb in the sentence: 'The old dog slept by the fire.'",
    "What is the past tense of the verb 'to swim'?",
    "Rewrite the sentence in the passive voice: 'The chef prepared the meal.'",
    "What is the difference between a metaphor and a simile? Give an example of each.",
    "Who wrote the play 'Romeo and Juliet', and in which century was it written?",
    "All cats are mammals. Some mammals are black. Does it follow that some cats are black? Explain.",
    "What is the next number in the sequence 2, 6, 12, 20, 30, ...?",
    "If it is 3 pm in London, what time is it in New York when New York is five hours behind?",
    "Tom is older than Anna, and Anna is older than Ben. Who is the youngest?",
    "Write a Python function that returns the largest number in a list.",
    "What does the following code print? for i in range(3): print(i * 2)",
    "What is the time complexity of binary search on a sorted array?",
    "Explain the difference between a list and a tuple in Python.",
    "Write a SQL query that selects all customers from the table 'customers' whose city is 'Paris'.",
    "What is recursion in programming? Give a short example.",
    "Convert the binary number 101101 to decimal.",
    "Which of these is a prime number? (A) 21 (B) 27 (C) 29 (D) 33",
    "Which planet is closest to the Sun? (A) Venus (B) Mercury (C) Mars (D) Earth",
    "Water boils at sea level at: (A) 90 C (B) 100 C (C) 110 C (D) 120 C",
    "Which organ produces insulin? (A) liver (B) kidney (C) pancreas (D) stomach",
    "The chemical symbol Fe stands for: (A) fluorine (B) iron (C) lead (D) francium",
    "Which of the following is a renewable energy source? (A) coal (B) natural gas (C) solar (D) oil",
    "What is the main idea of supply and demand in economics?",
    "What is inflation, and how does it affect the purchasing power of money?",
    "Calculate the simple interest on $1,000 at 5% per year for 3 years.",
    "What is the median of the numbers 3, 9, 4, 7, 12?",
    "A bag has 3 red and 5 blue marbles. What is the probability of drawing a red marble?",
    "Translate into French: 'Where is the train station?'",
    "What is the plural of 'criterion'?",
    "Explain what a hypothesis is in the scientific method.",
    "Why do objects float or sink in water? Explain in terms of density.",
    "What is the speed of light in a vacuum, approximately, in metres per second?",
    "Describe the water cycle in four steps.",
    "What is the Pythagorean theorem? Use it to find the hypotenuse of a triangle with legs 6 and 8.",
)

ARITHMETIC_FORMS: tuple[str, ...] = (
    "What is {a} multiplied by {b}?",
    "Calculate {a} + {b} - {c}.",
    "A shop sells pens at {b} cents each. How much do {a} pens cost in cents?",
    "What is {a} divided by {b}, to two decimal places?",
    "Exam question: compute {a} x {b} and show your working.",
    "If you have {a} apples and give away {c}, then buy {b} more, how many apples do you have?",
)
ARITHMETIC_NUMBERS: tuple[tuple[int, int, int], ...] = (
    (17, 23, 9), (48, 12, 15), (125, 8, 30), (64, 7, 11), (39, 14, 6), (250, 16, 75),
    (93, 21, 18), (56, 9, 27),
)


@cache
def _capability_prompts() -> tuple[str, ...]:
    arithmetic = tuple(form.format(a=a, b=b, c=c) for (a, b, c), form in
                       zip(ARITHMETIC_NUMBERS, ARITHMETIC_FORMS * 2, strict=False))
    return CAPABILITY_PROMPTS + arithmetic


def reference_prompts(name: str) -> list[str]:
    """The prompts of the built-in set ``general_text`` or ``capability`` (see the module docstring)."""
    if name == GENERAL_TEXT:
        return list(GENERAL_TEXT_PROMPTS)
    if name == CAPABILITY:
        return list(_capability_prompts())
    raise ValueError(f"{name!r} is not one of {', '.join(REFERENCE_SETS)}")
