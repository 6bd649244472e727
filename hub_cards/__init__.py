"""Model-card templates for hf_l3rs meta-weights (packaged with the wheel)."""

from importlib.resources import files


def template(name: str = "l3rs_card.md") -> str:
    """Text of a card template shipped in this package."""
    return files(__name__).joinpath(name).read_text()
