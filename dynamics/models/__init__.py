"""Models of the task families, built from the hand-written layers of dynamics/model.py."""
