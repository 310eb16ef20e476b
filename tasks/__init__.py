"""The ground floor: what a network is trained on, and nothing of how. The synthetic tasks of
docs/tasks.md (`tasks.synthetic.get(name, **options)`), the text corpus and its word tokenizer, the
names and sentiment generators, the seq2seq tasks; and the one error type for bad input
(tasks/errors.py). Nothing here imports dynamics/ or analysis/."""
