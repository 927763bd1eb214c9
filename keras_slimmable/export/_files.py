"""Writing beside, renaming into place, and cleaning up after killed runs.

Everything an export writes first goes to a hidden name beside its target,
`.<target>.<kind>-<pid>-<random>` (kind `partial`, `old`, `scratch` or
`publish`): hidden and not a number, so TF Serving (which loads numeric
version folders) never takes one for a version. A run that is killed
leaves these behind; the next export into the same folder removes those
whose process has ended (`remove_leftovers`). No TensorFlow here.
"""

import contextlib
import os
import re
import shutil
import uuid

_LEFTOVER = re.compile(
    r"\.(?P<target>.+)\.(?P<kind>partial|old|scratch|publish)"
    r"-(?P<pid>\d+)-[0-9a-f]{12}"
)


def hidden_sibling(path, kind):
    """`.<name>.<kind>-<pid>-<random>` beside `path`."""
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    return path.parent / f".{path.name}.{kind}-{token}"


def parse_leftover(path):
    """`(target name, kind, pid)` of a hidden name made here, else `None`."""
    match = _LEFTOVER.fullmatch(path.name)
    if match is None:
        return None
    return match["target"], match["kind"], int(match["pid"])


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's process.
        return True
    return True


def remove(path):
    """Removes a file or folder tree; missing is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_leftovers(folder, targets=None, keep=()):
    """Removes what exports killed earlier left in `folder`.

    Only hidden names made by `hidden_sibling` whose process has ended (a
    running export's are kept), for the target names in `targets` (all if
    `None`), except the paths in `keep`.

    Returns:
        The paths removed.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for child in sorted(folder.iterdir()):
        parsed = parse_leftover(child)
        if parsed is None or child in keep:
            continue
        target, _, pid = parsed
        if targets is not None and target not in targets:
            continue
        if not _process_alive(pid):
            remove(child)
            removed.append(child)
    return removed


def fsync_folder(folder):
    """Makes a rename in `folder` durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def atomic_write_bytes(path, data):
    """Writes `data` to a hidden file beside `path`, then renames it.

    The file is flushed and synced before the rename, so `path` holds
    either its old content or all of `data`. Opened with mode 0o666 (less
    the umask), like an ordinary file, not `mkstemp`'s owner-only 0o600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = hidden_sibling(path, "partial")
    handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
        fsync_folder(path.parent)
    finally:
        if partial.exists():
            partial.unlink()


def new_folder(path):
    """Creates the folder `path` and its missing parents.

    Returns:
        The folders created, innermost first (for `remove_empty`).
    """
    created = []
    parent = path
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    path.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty(folders):
    """Removes each of `folders` that is still empty, in order."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def link_tree(source, target):
    """Copies the folder `source` to `target`, hard-linking the files.

    Exports never rewrite a published file in place, so sharing files is
    safe, and a copy of a SavedModel costs no disk. Falls back to copying
    where hard links are not possible.
    """

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def restore_retired(path):
    """Puts back an old `path` that a killed run had moved aside.

    Replacing a folder moves the old one aside (`.old-`), moves the new one
    in, then deletes the old one. Killed between the two moves, `path` is
    missing and its complete old version waits beside it: restored here.
    """
    if path.exists():
        return
    retired = [
        child
        for child in sorted(path.parent.iterdir())
        if (parsed := parse_leftover(child)) is not None
        and parsed[:2] == (path.name, "old")
        and not _process_alive(parsed[2])
    ]
    if len(retired) == 1:
        os.replace(retired[0], path)


@contextlib.contextmanager
def atomic_directory(path, overwrite):
    """Yields a staging folder beside `path`, renamed to `path` on success.

    On failure the staging folder is removed, and so are the parent folders
    this call created; `path` is untouched. The staging folder is made with
    `mkdir`, so it gets the usual permissions (umask), not `mkdtemp`'s
    owner-only ones: a server running as another user must be able to
    read the published model.
    """
    created = new_folder(path.parent)
    staging = hidden_sibling(path, "partial")
    staging.mkdir()
    published = False
    try:
        yield staging
        if path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{path} appeared during the export; it is left as it "
                    "is. Pass overwrite=True to replace it."
                )
            replace_folder(staging, path)
        else:
            os.replace(staging, path)
        fsync_folder(path.parent)
        published = True
    finally:
        if staging.exists():
            remove(staging)
        if not published:
            remove_empty(created)


def replace_folder(new, path):
    """Moves the folder `new` to the existing folder `path`.

    No portable atomic swap of two folders exists: the old folder is moved
    aside (a hidden name) first; killed before `new` is moved in,
    `restore_retired` puts it back on the next run.
    """
    retired = hidden_sibling(path, "old")
    os.replace(path, retired)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(retired, path)
        raise
    remove(retired)
