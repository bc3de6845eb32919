"""The four AG News classes, in label order (the original CSV's class index minus one)."""

LABEL_NAMES: tuple[str, ...] = ("World", "Sports", "Business", "Sci/Tech")
NUM_LABELS = len(LABEL_NAMES)
ID2LABEL: dict[int, str] = dict(enumerate(LABEL_NAMES))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}
