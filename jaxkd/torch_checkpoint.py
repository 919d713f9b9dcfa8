"""PyTorch state_dict files: read into, and written from, {name: numpy array}.

Formats, chosen by the file's suffix:
    .pth .pt .th    `torch.save` files, read with `torch.load(weights_only=True)` (no pickled
                    code runs) and written as torch tensors; needs torch, an optional dependency
    .safetensors    needs the `safetensors` package
    .npz            numpy alone

On reading, a state_dict wrapped as `{"model": sd}`, `{"state_dict": sd}` or `{"net": sd}`
(RepDistiller, mdistiller, other training scripts; other entries such as the epoch or the
optimizer state are ignored) is unwrapped, and the `module.` prefix of DataParallel is removed.
"""

import importlib
import os
import pickle
import zipfile
import zlib
from typing import Any, Mapping

import numpy as np

TORCH_SUFFIXES = (".pth", ".pt", ".th")
SAFETENSORS_SUFFIX = ".safetensors"
NPZ_SUFFIX = ".npz"
SUFFIXES = (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX, NPZ_SUFFIX)
TORCH_INSTALL = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
SAFETENSORS_INSTALL = "pip install safetensors"
WRAPPER_KEYS = ("model", "state_dict", "net")
DATA_PARALLEL_PREFIX = "module."

ZIP_HEADER = b"PK\x03\x04"  # .npz files, and .pth files since torch 1.6.
PICKLE_HEADER = b"\x80"  # .pth files of torch before 1.6: a pickle protocol 2 opcode.
HEADERS = {".pth": (ZIP_HEADER, PICKLE_HEADER), ".pt": (ZIP_HEADER, PICKLE_HEADER),
           ".th": (ZIP_HEADER, PICKLE_HEADER), ".npz": (ZIP_HEADER,)}
FORMAT_NAMES = {".pth": "PyTorch", ".pt": "PyTorch", ".th": "PyTorch", ".npz": "numpy .npz",
                SAFETENSORS_SUFFIX: "safetensors"}
# What reading a truncated or corrupt file raises, from torch (RuntimeError: PytorchStreamReader
# failed reading zip archive), numpy (BadZipFile, zlib.error, ValueError) and safetensors.
CORRUPT_FILE_ERRORS = (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile,
                       zlib.error, pickle.UnpicklingError)

StateDict = dict[str, np.ndarray]


def is_torch_checkpoint(path: str) -> bool:
  """Whether `path` names a state_dict file (by its suffix: .pth .pt .th .safetensors .npz)."""
  return os.fspath(path).lower().endswith(SUFFIXES)


def _suffix(path: str) -> str:
  suffix = os.path.splitext(os.fspath(path))[1].lower()
  if suffix not in SUFFIXES:
    raise ValueError(f"'{path}' is not a state_dict file: give a path ending in "
                     f"{', '.join(SUFFIXES)}")
  return suffix


def _import(module: str, needed_for: str, install: str) -> Any:
  """`module`, or an ImportError of one line saying how to install it."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise ImportError(f"{needed_for} needs the optional package '{module.split('.')[0]}': "
                      f"{install}") from None


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
  """The state_dict inside `checkpoint`, without wrappers and without the `module.` prefix."""
  while True:
    wrapped = [key for key in WRAPPER_KEYS if isinstance(checkpoint.get(key), Mapping)]
    if not wrapped:
      break
    checkpoint = checkpoint[wrapped[0]]
  state_dict = dict(checkpoint)
  if state_dict and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state_dict):
    state_dict = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state_dict.items()}
  return state_dict


def _has_header(start: bytes, suffix: str) -> bool:
  """Whether a file that begins with `start` begins as files of `suffix`'s format do
  (safetensors: an 8-byte length, then a JSON header)."""
  if suffix == SAFETENSORS_SUFFIX:
    return start[8:9] == b"{"
  return start.startswith(HEADERS[suffix])


def check_state_dict_file(path: str) -> None:
  """Cheap checks of a state_dict file before anything heavy is imported: it exists, is a
  readable file, starts as files of its format (by suffix) do and, if a zip archive, ends as
  one does (a truncated copy does not).

  Raises:
    FileNotFoundError: nothing at `path`.
    ValueError: anything else, in one line that says what to fix.
  """
  suffix = _suffix(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no state_dict file at '{path}'")
  if os.path.isdir(path):
    raise ValueError(f"'{path}' is a directory, not a state_dict file: give the {suffix} file")
  try:
    with open(path, "rb") as file:
      start = file.read(9)
  except OSError as error:
    raise ValueError(f"'{path}' cannot be read ({error.strerror}): check its permissions"
                     ) from None
  if not _has_header(start, suffix):
    problem = "is empty" if os.path.getsize(path) == 0 else (
        f"is not a {FORMAT_NAMES[suffix]} file (its first bytes are not those of one)")
    raise ValueError(f"'{path}' {problem}: give a state_dict saved as {suffix}, or copy the "
                     "file again")
  if start.startswith(ZIP_HEADER) and not zipfile.is_zipfile(path):
    raise ValueError(f"'{path}' is truncated (a zip archive without its closing directory): "
                     "copy or save it again")


def _corrupt(path: str, error: Exception) -> ValueError:
  """The one-line error of a file that has its format's header but does not read."""
  detail = " ".join(str(error).split()).split(". ")[0][:160]
  return ValueError(f"'{path}' is truncated or corrupt ({type(error).__name__}: {detail}): "
                    "copy or save it again")


def _read_torch(path: str) -> dict[str, Any]:
  torch = _import("torch", f"reading '{path}'", TORCH_INSTALL)
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    if "Weights only load failed" not in str(error):
      raise _corrupt(path, error) from None
    raise ValueError(
        f"'{path}' holds more than tensors and plain containers, and jaxkd runs no pickled "
        "code: re-save its weights with torch.save(model.state_dict(), path)") from None
  except CORRUPT_FILE_ERRORS as error:
    raise _corrupt(path, error) from None
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f"'{path}' holds a {type(checkpoint).__name__}, not a state_dict: save "
                     "model.state_dict() rather than the model")
  state_dict = unwrap_state_dict(checkpoint)
  not_tensors = [key for key, value in state_dict.items() if not torch.is_tensor(value)]
  if not_tensors:
    raise ValueError(f"'{path}' is not a state_dict: entries {', '.join(not_tensors)} are not "
                     "tensors")
  return {key: value.detach().cpu().float().numpy() if value.dtype == torch.bfloat16
          else value.detach().cpu().numpy() for key, value in state_dict.items()}


def read_state_dict(path: str) -> StateDict:
  """The state_dict stored at `path`, as numpy arrays (format by suffix, see the module doc)."""
  check_state_dict_file(path)
  suffix = _suffix(path)
  if suffix in TORCH_SUFFIXES:
    return _read_torch(path)
  try:
    if suffix == SAFETENSORS_SUFFIX:
      safetensors_numpy = _import("safetensors.numpy", f"reading '{path}'",
                                  SAFETENSORS_INSTALL)
      return unwrap_state_dict(safetensors_numpy.load_file(path))
    with np.load(path, allow_pickle=False) as npz:
      return unwrap_state_dict({key: npz[key] for key in npz.files})
  except CORRUPT_FILE_ERRORS as error:
    raise _corrupt(path, error) from None


def write_state_dict(state_dict: Mapping[str, np.ndarray], path: str) -> None:
  """Writes `state_dict` to `path` in the format its suffix names (see the module doc).

  The file is written beside `path` and renamed into place when complete, so a failed write
  (a full disk) leaves no truncated file, and a file already at `path` intact.
  """
  _suffix(path)  # An unknown suffix raises before anything is written.
  arrays = {key: np.array(value, order="C") for key, value in state_dict.items()}  # writable
  directory, name = os.path.split(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  partial = os.path.join(directory, f".partial.{name}")  # Same suffix: np.savez keeps it.
  try:
    _write_arrays(arrays, partial, path)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def _write_arrays(arrays: Mapping[str, np.ndarray], partial: str, path: str) -> None:
  """Writes `arrays` to `partial` in the format that the suffix of `path` names."""
  suffix = _suffix(path)
  if suffix in TORCH_SUFFIXES:
    torch = _import("torch", f"writing '{path}'", TORCH_INSTALL)
    torch.save({key: torch.from_numpy(value) for key, value in arrays.items()}, partial)
  elif suffix == SAFETENSORS_SUFFIX:
    safetensors_numpy = _import("safetensors.numpy", f"writing '{path}'", SAFETENSORS_INSTALL)
    safetensors_numpy.save_file(arrays, partial)
  else:
    np.savez(partial, **arrays)
