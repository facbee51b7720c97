"""GLI Global 2022 lookup tables shipped as package data (see README.md)."""
