"""Lay out Fashion-MNIST (Debian package ``dataset-fashion-mnist``) for mmpretrain.

mmpretrain's ``FashionMNIST`` dataset reads the four raw IDX files, decompressed, from its
``data_root``. This copies them there from the Debian package; it never downloads anything.

Usage:
    python tools/data/build_fashion_mnist.py [--source DIR] [--out data/fashion_mnist]
"""
import argparse
import gzip
import os
import os.path as osp
import shutil
import sys

DEBIAN_SOURCE = '/usr/share/datasets/fashion-mnist'
FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
         't10k-labels-idx1-ubyte')


def build(source: str, out: str) -> str:
    """Decompress the IDX files from ``source`` into ``out`` (skips files already there).

    Args:
        source (str): Folder holding ``*-ubyte.gz`` (or plain) IDX files.
        out (str): Output folder (mmpretrain ``data_root``).

    Returns:
        str: ``out``.

    Raises:
        FileNotFoundError: When the source files are missing, with the install command.
    """
    missing = [
        f for f in FILES
        if not (osp.isfile(osp.join(source, f + '.gz')) or osp.isfile(osp.join(source, f)))
    ]
    if missing:
        raise FileNotFoundError(
            f'Fashion-MNIST not found in {source} (missing {", ".join(missing)}). Install the '
            'Debian package: sudo apt-get install dataset-fashion-mnist')
    os.makedirs(out, exist_ok=True)
    for name in FILES:
        target = osp.join(out, name)
        if osp.isfile(target):
            continue
        plain = osp.join(source, name)
        if osp.isfile(plain):
            shutil.copyfile(plain, target + '.tmp')
        else:
            with gzip.open(plain + '.gz', 'rb') as src, open(target + '.tmp', 'wb') as dst:
                shutil.copyfileobj(src, dst)
        os.replace(target + '.tmp', target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--source', default=DEBIAN_SOURCE, help='folder with the IDX files')
    parser.add_argument('--out', default='data/fashion_mnist', help='output data_root')
    args = parser.parse_args()
    try:
        print(f'Fashion-MNIST ready in {build(args.source, args.out)}')
    except FileNotFoundError as err:
        sys.exit(str(err))


if __name__ == '__main__':
    main()
