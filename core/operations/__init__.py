"""The life around a run: the environment check (doctor), the plan before any download, and the notification when
a detached run ends."""
