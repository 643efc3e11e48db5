"""Dataset builders write valid, deterministic OpenMMLab formats from real packaged data."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

needs_fashion_mnist = pytest.mark.skipif(
    not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
    reason='Debian package dataset-fashion-mnist not installed (tools/install.sh installs it '
    'as root)')


def test_missing_source_gives_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        build_fashion_mnist.build(str(tmp_path / 'nothing'), str(tmp_path / 'out'))


@needs_fashion_mnist
def test_fashion_mnist_layout_loads_in_mmpretrain(tmp_path):
    from mmpretrain.datasets import FashionMNIST
    root = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    test_set = FashionMNIST(data_root=root, test_mode=True, download=False)
    assert len(test_set) == 10000
    item = test_set.get_data_info(0)
    assert item['img'].shape == (28, 28) and 0 <= int(item['gt_label']) < 10


@needs_fashion_mnist
def test_composite_set_is_valid_and_deterministic(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    files = build_composite.build(
        str(tmp_path / 'a'), train=6, val=2, size=96, seed=3, fashion_root=fashion)
    coco = COCO(files['train'])
    assert len(coco.getImgIds()) == 6 and coco.getAnnIds()
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert 1 <= ann['category_id'] <= 10
        mask = mask_utils.decode(ann['segmentation']).astype(bool)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        assert mask.sum() == ann['area']
        image = coco.loadImgs(ann['image_id'])[0]
        semantic = np.array(
            Image.open(osp.join(tmp_path, 'a', 'masks', 'train', image['file_name'])))
        assert (semantic[mask] == ann['category_id']).all()  # label = class + 1
    again = build_composite.build(
        str(tmp_path / 'b'), train=6, val=2, size=96, seed=3, fashion_root=fashion)

    def digest(path):
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()

    assert digest(files['train']) == digest(again['train'])
    with open(files['val']) as f:
        assert len(json.load(f)['categories']) == 10


def test_tree_crowns_become_a_fixed_coco_split(tmp_path):
    from pycocotools.coco import COCO

    from mmtkd.datasets import tree_crowns as build_tree_crowns
    files = build_tree_crowns.build(str(tmp_path / 'trees'))
    train, val = COCO(files['train']), COCO(files['val'])
    assert len(train.getImgIds()) > len(val.getImgIds()) > 0
    total = 0
    for coco in (train, val):
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(ann['image_id'])[0]
            x, y, w, h = ann['bbox']
            assert ann['category_id'] == 1 and w > 0 and h > 0
            assert x >= 0 and y >= 0 and x + w <= image['width'] and y + h <= image['height']
            total += 1
    # every box of the four annotated images lands in exactly one tile
    data_dir = build_tree_crowns.deepforest_data_dir()
    expected = sum(
        len(build_tree_crowns.read_voc(osp.join(data_dir, f))) for f in os.listdir(data_dir)
        if f.endswith('.xml') and osp.isfile(osp.join(data_dir, f[:-4] + '.png')))
    assert total == expected
    again = build_tree_crowns.build(str(tmp_path / 'again'))
    with open(files['val']) as a, open(again['val']) as b:
        assert json.load(a) == json.load(b)
