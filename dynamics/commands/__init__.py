"""Every `dynamics` command, one module each: a click command that parses its arguments, checks
its inputs before anything is written, and calls one library function that a notebook can call
with the same arguments. Bad input is one line on stderr and exit status 2 (dynamics/cli.py).

The commands are the top layer: they may import anything below them (analysis/, the rest of
dynamics/, tasks/); nothing imports them but dynamics/cli.py.
"""
