"""A Fairseq task loads its dictionaries from a directory by name (``dict.txt``,
``dict.<lang>.txt``); a user gives one file of any name."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Sequence


@contextlib.contextmanager
def dictionary_dir(dict_path: str, names: Sequence[str]) -> Iterator[str]:
    """A directory holding ``dict_path`` under each of ``names``: the file's own directory when
    it is the only name asked for and the file is named so, else a temporary copy removed on exit
    (the task has read the dictionaries by then)."""
    if list(names) == [os.path.basename(dict_path)]:
        yield os.path.dirname(os.path.abspath(dict_path))
        return
    tmp = tempfile.mkdtemp(prefix="pf_dict.")
    try:
        for name in names:
            shutil.copyfile(dict_path, os.path.join(tmp, name))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
