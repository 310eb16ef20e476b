"""Models of the task families beyond the stacked recurrent model of dynamics/model.py."""
