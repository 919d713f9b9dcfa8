"""The train state of a distillation run.

`DistillState` holds every variable of a run as one pytree, so that one jit-compiled
step updates it and one orbax checkpoint saves it:
- `params` / `batch_stats`: `{'student': ..., 'teachers': (...), 'extra': ...}`;
- `student_opt_state`: the student optimizer's state over `{'student', 'extra'}`;
- `teacher_opt_state`: the teacher optimizer's state over `teachers`
  (`Method.init_optimizer_states`; empty for a teacher the method does not train);
- `method_state`: whatever the method keeps across steps (`Method.init_state`);
- `step` and `rng` (raw key data, so that checkpoints hold plain arrays).
"""

from typing import Any

import flax.struct
import jax

PyTree = Any


@flax.struct.dataclass
class DistillState:
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  student_opt_state: PyTree
  teacher_opt_state: PyTree
  method_state: PyTree
  rng: jax.Array

  def key(self) -> jax.Array:
    """This state's typed PRNG key."""
    return jax.random.wrap_key_data(self.rng)


def student_trainable(tree: PyTree) -> PyTree:
  """The part of a params-shaped tree that the student optimizer updates."""
  return {"student": tree["student"], "extra": tree["extra"]}
