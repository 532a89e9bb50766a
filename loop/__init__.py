"""Top floor: the `msmine` command and the orchestration that runs the whole loop (demo, simulate,
report). It imports every layer below; nothing imports it."""
