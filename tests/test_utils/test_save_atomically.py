"""``save_atomically``: a whole file or none, also when several processes write one file."""
import os
import threading

import pytest
import torch

from mmtkd.utils import save_atomically


def test_writers_of_the_same_file_at_once_each_rename_a_whole_file(tmp_path):
    """Two writers inside their dump at the same time (as two lanes of the quality benchmark
    making the same corrupted teacher): both succeed, the file is a whole one, and no temporary
    file is left behind."""
    path = str(tmp_path / 'teacher_permuted.pth')
    both_writing = threading.Barrier(2, timeout=30)
    errors = []

    def dump(obj, file):
        torch.save(obj, file)
        both_writing.wait()  # the other writer has written its own temporary file too

    def write(value):
        try:
            save_atomically({'value': torch.full((1000, ), value)}, path, dump=dump)
        except Exception as error:  # reported below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(v, )) for v in (1.0, 2.0)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    value = torch.load(path)['value']
    assert value.unique().numel() == 1 and value[0].item() in (1.0, 2.0)
    assert os.listdir(tmp_path) == ['teacher_permuted.pth']


def test_a_failed_dump_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = str(tmp_path / 'metrics.pth')
    save_atomically({'a': 1}, path)

    def broken(obj, file):
        with open(file, 'wb') as f:
            f.write(b'half')
        raise OSError('disk full')

    with pytest.raises(OSError, match='disk full'):
        save_atomically({'a': 2}, path, dump=broken)
    assert torch.load(path) == {'a': 1}
    assert os.listdir(tmp_path) == ['metrics.pth']


def test_the_file_gets_the_permissions_of_any_file_the_user_writes(tmp_path):
    """Not a private temporary file's 0600: a checkpoint others of the group could read stays
    readable."""
    save_atomically({'a': 1}, str(tmp_path / 'ckpt.pth'))
    torch.save({'a': 1}, str(tmp_path / 'plain.pth'))
    assert (tmp_path / 'ckpt.pth').stat().st_mode == (tmp_path / 'plain.pth').stat().st_mode
