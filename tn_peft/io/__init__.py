"""Files: the adapter checkpoint format (:mod:`.checkpoint`) and atomic writes (:mod:`.atomic`,
re-exported here: ``tn_peft.io`` was that module)."""

from .atomic import atomic_write, atomic_write_bytes, atomic_write_folder, atomic_write_text, write_json

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_folder", "atomic_write_text", "write_json"]
