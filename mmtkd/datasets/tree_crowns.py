"""Build a COCO detection set of tree crowns from the real aerial images that the PyPI package
``deepforest==2.1.0`` ships in its ``data/`` folder (install it with ``--no-deps``).

The four annotated images (Pascal VOC xml, one class 'tree') are cut into ``--tile`` x ``--tile``
tiles; a box belongs to the tile holding its centre and is clipped to it. The split is fixed:
every ``--val-every``-th tile (in a deterministic order) goes to val, the rest to train.

Writes, under ``--out``: ``images/*.png`` and ``annotations/{train,val}.json``.

Usage:
    python tools/data/build_tree_crowns.py [--out data/tree_crowns] [--tile 400]
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image


def deepforest_data_dir() -> str:
    """The ``data/`` folder of the installed deepforest package."""
    spec = importlib.util.find_spec('deepforest')
    if spec is None or spec.origin is None:
        raise FileNotFoundError('the tree-crown images come with the PyPI package deepforest: '
                                'pip install --no-deps deepforest==2.1.0')
    return osp.join(osp.dirname(spec.origin), 'data')


def read_voc(path: str) -> List[Tuple[float, float, float, float]]:
    """Boxes ``(x1, y1, x2, y2)`` of a Pascal VOC annotation file."""
    boxes = []
    for obj in ET.parse(path).getroot().iter('object'):
        box = obj.find('bndbox')
        boxes.append(tuple(float(box.find(k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax')))
    return boxes


def tiles(image: np.ndarray, boxes, tile: int):
    """Yield ``(crop, boxes in crop coordinates)`` for every full or edge tile with boxes."""
    height, width = image.shape[:2]
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            crop = image[y:y + tile, x:x + tile]
            inside = []
            for x1, y1, x2, y2 in boxes:
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                if x <= cx < x + crop.shape[1] and y <= cy < y + crop.shape[0]:
                    inside.append((max(x1 - x, 0), max(y1 - y, 0), min(x2 - x, crop.shape[1]),
                                   min(y2 - y, crop.shape[0])))
            if inside:
                yield crop, inside


def build(out: str, tile: int = 400, val_every: int = 5, data_dir: str = None) -> Dict[str, str]:
    """Tile, convert and split; returns ``{split: annotation file}``."""
    data_dir = data_dir or deepforest_data_dir()
    sources = sorted(f[:-4] for f in os.listdir(data_dir)
                     if f.endswith('.xml') and osp.isfile(osp.join(data_dir, f[:-4] + '.png')))
    if not sources:
        raise FileNotFoundError(f'no annotated images (*.xml + *.png) in {data_dir}')
    os.makedirs(osp.join(out, 'images'), exist_ok=True)
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    splits = {
        s: dict(images=[], annotations=[], categories=[dict(id=1, name='tree')])
        for s in ('train', 'val')
    }
    index = 0
    for source in sources:
        image = np.array(Image.open(osp.join(data_dir, source + '.png')).convert('RGB'))
        for crop, boxes in tiles(image, read_voc(osp.join(data_dir, source + '.xml')), tile):
            split = splits['val' if index % val_every == val_every - 1 else 'train']
            name = f'{source}_{index:04d}.png'
            Image.fromarray(crop).save(osp.join(out, 'images', name))
            image_id = len(split['images']) + 1
            split['images'].append(
                dict(id=image_id, file_name=name, width=crop.shape[1], height=crop.shape[0]))
            for x1, y1, x2, y2 in boxes:
                split['annotations'].append(
                    dict(
                        id=len(split['annotations']) + 1,
                        image_id=image_id,
                        category_id=1,
                        bbox=[x1, y1, x2 - x1, y2 - y1],
                        area=(x2 - x1) * (y2 - y1),
                        iscrowd=0))
            index += 1
    files = {}
    for name, split in splits.items():
        files[name] = osp.join(out, 'annotations', f'{name}.json')
        with open(files[name], 'w') as f:
            json.dump(split, f)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/tree_crowns')
    parser.add_argument('--tile', type=int, default=400)
    parser.add_argument('--val-every', type=int, default=5)
    args = parser.parse_args()
    try:
        files = build(args.out, args.tile, args.val_every)
    except FileNotFoundError as err:
        sys.exit(str(err))
    for split, path in files.items():
        with open(path) as f:
            data = json.load(f)
        print(f'{split}: {path} ({len(data["images"])} images, {len(data["annotations"])} '
              'boxes)')


if __name__ == '__main__':
    main()
