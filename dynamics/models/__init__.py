"""Models of the task families, built from the hand-written recurrent layers of dynamics/model.py."""
