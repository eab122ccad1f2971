"""The domains: importing this package registers every domain and its task templates."""

from xlam.synth.domains import arith, bank, calendar, files, shop, text, travel  # noqa: F401
