"""The project's spiders; ``python -m scraper run NAME`` finds them here by ``name``."""
