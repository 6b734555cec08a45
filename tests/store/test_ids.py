import os
import uuid

from kjerne.store.ids import new_id


def test_ids_are_version_4_uuids_in_canonical_form():
    ids = [new_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for x in ids:
        u = uuid.UUID(x)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == x


def test_a_forked_child_does_not_repeat_its_parents_ids():
    new_id()  # the parent holds buffered random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child and child != new_id()
