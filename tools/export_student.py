"""Convert an mmtkd checkpoint into a student-only checkpoint.

The output loads into the stock student config (e.g.
``mmdet::retinanet/retinanet_r18_fpn_1x_coco.py``) with that codebase's own tools.

Usage:
    python tools/export_student.py CKPT OUT [--overwrite]
"""
import argparse
import sys

import mmtkd  # noqa: F401  (allow-lists MMEngine checkpoint types for safe loading)
from mmtkd.utils import export_student_file


def main() -> None:
    parser = argparse.ArgumentParser(description='Export the student of an mmtkd checkpoint')
    parser.add_argument('checkpoint', help='checkpoint written while training an mmtkd config')
    parser.add_argument('out', help='where to write the student-only checkpoint')
    parser.add_argument('--overwrite', action='store_true', help='replace OUT if it exists')
    args = parser.parse_args()
    try:
        print(f'wrote {export_student_file(args.checkpoint, args.out, args.overwrite)}')
    except (FileNotFoundError, FileExistsError, KeyError) as err:
        sys.exit(f'export_student: {err}')


if __name__ == '__main__':
    main()
