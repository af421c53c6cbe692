"""The key under which a constraint factory hands the director its grammar record."""

CONSTRAINT_RECORD_KEY = "flowsteer_constraint"
"""Key of a constraint factory's result holding the grammar record (never sent to the model): the
director takes it out of the call kwargs and stores it with the turn's tokens for the trainer's replay."""
