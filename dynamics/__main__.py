"""`python -m dynamics`: the `dynamics` command."""
from .cli import main

if __name__ == "__main__":
    main()
