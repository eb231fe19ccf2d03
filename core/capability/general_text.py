"""The general text perplexity is measured on: plain prose on everyday subjects, written for this project.

No model was tuned on it here and it asks for nothing, so a change in its perplexity shows how much an edit hurt
ordinary language. Each paragraph is its own sample, so the difference between two models has a confidence interval.
"""

from __future__ import annotations

GENERAL_TEXT: tuple[str, ...] = (
    "The river runs slowly through the valley in late summer, and the farmers along its banks cut the hay while the "
    "weather holds. In the evening the air cools and the village lights come on one by one.",
    "A good recipe for bread needs only flour, water, salt and yeast. Mix them, knead the dough until it is smooth, "
    "let it rise for an hour, shape the loaf and bake it in a hot oven until the crust is brown.",
    "The committee met on Tuesday to discuss the new library. Most members agreed that the reading room should be "
    "larger and that the opening hours should include Sunday afternoons.",
    "When a bicycle moves, small steering corrections keep the wheels under the rider's centre of mass, which is why "
    "riding slowly feels harder than riding fast.",
    "Water boils at a lower temperature on a mountain than at the sea, because the air pressure is lower higher up. "
    "Cooking pasta at altitude therefore takes a little longer.",
    "The old train station was turned into a market last spring. On Saturdays it is full of stalls selling cheese, "
    "vegetables, bread and flowers from the farms around the town.",
    "Most plants need light, water and air to grow. Their leaves turn sunlight into sugar, and their roots take up "
    "water and minerals from the soil.",
    "She wrote the letter by hand, folded it twice and put it in an envelope. Then she walked to the post office "
    "before it closed at five.",
    "A map uses a scale to show distances. If one centimetre on the map stands for one kilometre, a road that is "
    "five centimetres long on paper is five kilometres long in reality.",
    "The museum's new exhibition shows tools from the stone age, pottery from early farming villages and the first "
    "coins that were used for trade along the coast.",
    "Regular exercise strengthens the heart and the muscles. Even a brisk walk of half an hour a day makes a "
    "difference for most people.",
    "The children built a small boat out of wood and string and let it float on the pond. It drifted towards the "
    "reeds, where a duck watched it with suspicion.",
    "In a democracy, citizens elect representatives who make laws on their behalf. Elections are usually held every "
    "few years, and the votes are counted in public.",
    "Bees carry pollen from one flower to the next, which helps the plants make seeds and fruit. Many crops depend "
    "on them.",
    "The recipe asks for two eggs, a cup of sugar and a cup of flour. Beat the eggs with the sugar first, then fold "
    "in the flour gently so the batter stays light.",
    "The moon takes about a month to travel around the Earth. As it moves, we see different parts of its sunlit "
    "side, which is why its shape seems to change.",
    "He repaired the fence after the storm, replacing two broken posts and nailing the loose boards back in place. "
    "By evening the garden was closed again.",
    "A library card lets you borrow books, films and music for a few weeks at a time. Most libraries also offer "
    "free internet access and quiet rooms for study.",
    "Glass is made by melting sand with soda and lime at a very high temperature. While it is hot it can be blown, "
    "pressed or rolled into shape.",
    "The meeting was moved to Thursday because several people were travelling. The agenda stayed the same: the "
    "budget, the new schedule and the summer party.",
    "Clouds form when warm, moist air rises and cools. The water vapour condenses into tiny droplets, and when the "
    "droplets grow heavy enough they fall as rain.",
    "The shop on the corner sells newspapers, sweets and stamps. Its owner has known most of the customers by name "
    "for more than twenty years.",
    "To plant a tree, dig a hole twice as wide as its roots, set the tree in it at the same depth it grew before, "
    "fill the hole with soil and water it well.",
    "The orchestra tuned their instruments while the audience found their seats. When the lights dimmed, the "
    "conductor raised his baton and the hall fell silent.",
)
