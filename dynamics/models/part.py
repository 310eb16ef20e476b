"""What a model shows the probes: each recurrent (or per-position) part of it after a backward
pass. `model.parts()` returns them, the input side first and the main part (the top layer, or
the decoder) last; dynamics/probes/ reads each one."""
from collections import namedtuple

# hidden (T, B, H), gates {name: (T, B, H)}, grad = ∂L/∂h_t (T, B, H); lengths (B,) or None when
# every sequence fills T; align "start" (t counts from the first token) or "end" (from the last).
Part = namedtuple("Part", "name cell activation hidden gates grad lengths align",
                  defaults=(None, "start"))
