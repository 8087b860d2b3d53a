"""Data stage: sources → download → safe extraction → decode → clip store → validation → DVC."""
