"""A Python 3 transcription of the official VSGNet forward pass on HICO-DET, the reference that
tests/test_official_forward.py holds the project's heads to.

Written from reading ASMIftekhar/VSGNet, ``scripts_hico/``: ``model.py`` (``VSGNet.__init__``
and ``forward``), ``pool_pairing.py`` (``get_pool_loc``, ``extract_spatial``, ``pairing``),
``helpers_preprocess.py`` (``get_compact_detections``, ``union_BOX``, ``get_attention_maps``)
and ``train_test.py`` (the LIS-weighted score and the loss of ``train_test``). It keeps the
official structure on purpose: loops over images, boxes and pairs, Python ``int()`` on the
normalised boxes, numpy slices, module names. What changes: no CUDA calls; the backbone
(``Conv_pretrain``) is left out, the forward takes its layer-3 map; the detections of each
image come as arrays instead of being read from the official JSON files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LIN_SIZE = 1024
POOL_SIZE = (10, 10)
NUM_VERBS = 117


@dataclass
class ImageDetections:
    """One image as ``helpers_preprocess.get_compact_detections`` returns it: continuous boxes
    ``[left, top, right, bottom]`` in pixels (float32), objects with the humans appended."""

    width: int
    height: int
    persons: np.ndarray  # (H, 4)
    objects: np.ndarray  # (O, 4), the last H of them the persons
    person_scores: Sequence[float]
    object_scores: Sequence[float]
    object_classes: Sequence[int]  # HICO object index (0-based) of each object

    def compact(self) -> tuple[np.ndarray, np.ndarray]:
        """The boxes divided by the image size (float64, as numpy promotes them)."""
        scale = np.array([self.width, self.height, self.width, self.height])
        return (np.array(self.persons, np.float32) / scale,
                np.array(self.objects, np.float32) / scale)


def union_box(roi_pers: np.ndarray, roi_objs: np.ndarray, h: int = 64, w: int = 64) -> np.ndarray:
    """helpers_preprocess.union_BOX: the (1, 2, 64, 64) two-box map of a pair."""
    assert h == w
    roi_pers = np.array(roi_pers * h, dtype=int)
    roi_objs = np.array(roi_objs * h, dtype=int)
    sample_box = np.zeros([1, 2, h, w])
    sample_box[0, 0, roi_pers[1]:roi_pers[3] + 1, roi_pers[0]:roi_pers[2] + 1] = 100
    sample_box[0, 1, roi_objs[1]:roi_objs[3] + 1, roi_objs[0]:roi_objs[2] + 1] = 100
    return sample_box


def get_attention_maps(det: ImageDetections) -> np.ndarray:
    """helpers_preprocess.get_attention_maps: every (person, object) pair's map, person-major."""
    persons_np, objects_np = det.compact()
    union = []
    for dd_i in range(len(persons_np)):
        for do_i in range(len(objects_np)):
            union.append(union_box(persons_np[dd_i], objects_np[do_i]))
    return np.concatenate(union)


def get_pool_loc(ims: torch.Tensor, dets: Sequence[ImageDetections], size=(7, 7)):
    """pool_pairing.get_pool_loc: the crop + adaptive max pool of every box, the integer boxes
    ``[x1, y1, x2, y2, x2 - x1, y2 - y1]`` on the map, and the pairs' two-box maps."""
    spatial_locs, union_box_out, pers_out, objs_out = [], [], [], []
    max_pool = nn.AdaptiveMaxPool2d(size)
    for batch in range(len(dets)):
        roi_pers, roi_objs = dets[batch].compact()
        union_box_out.append(torch.tensor(get_attention_maps(dets[batch])).float())
        w, h = ims[batch].size()[1], ims[batch].size()[2]
        spatial_scale = [w, h, w, h]
        image_this_batch = ims[batch]
        roi_pers = roi_pers * spatial_scale
        roi_objs = roi_objs * spatial_scale
        for rois, out in ((roi_pers, pers_out), (roi_objs, objs_out)):
            for roi_val in rois:
                x1, y1, x2, y2 = int(roi_val[0]), int(roi_val[1]), int(roi_val[2]), int(roi_val[3])
                sp = [x1, y1, x2, y2, x2 - x1, y2 - y1]
                im = image_this_batch.narrow(0, 0, image_this_batch.size()[0])[
                    ..., y1:(y2 + 1), x1:(x2 + 1)]
                out.append(max_pool(im))
                spatial_locs.append(sp)
    return torch.stack(pers_out), torch.stack(objs_out), spatial_locs, torch.cat(union_box_out)


def extract_spatial(hum_box, obj_box) -> torch.Tensor:
    """pool_pairing.extract_spatial: s_ho of a pair from the integer boxes."""
    x1h, y1h, wh, hh = float(hum_box[0]), float(hum_box[1]), float(hum_box[4]), float(hum_box[5])
    x1o, y1o, wo, ho = float(obj_box[0]), float(obj_box[1]), float(obj_box[4]), float(obj_box[5])
    if wh == 0.0:
        wh += 1
    if hh == 0.0:
        hh += 1
    diff_x = 0.001 if x1h - x1o == 0 else x1h - x1o
    diff_y = 0.001 if y1h - y1o == 0 else y1h - y1o
    if wo != 0 and ho != 0:
        values = [diff_x / wo, diff_y / ho, math.log(wh / wo), math.log(hh / ho)]
    elif wo == 0 and ho != 0:
        values = [diff_x, diff_y / ho, math.log(wh), math.log(hh / ho)]
    elif wo != 0 and ho == 0:
        values = [diff_x / wo, diff_y, math.log(wh / wo), math.log(hh)]
    else:
        values = [diff_x, diff_y, math.log(wh), math.log(hh)]
    return torch.FloatTensor(values)


def pairing(pers, objs, context, spatial_locs, pairs_info):
    """pool_pairing.pairing: [f_h, f_o, s_ho, f_C] of every pair, image by image."""
    pairs_out, pers_out, objs_out = [], [], []
    start = start_p = start_o = 0
    for batch in range(len(pairs_info)):
        this_batch_per, this_batch_obj = int(pairs_info[batch][0]), int(pairs_info[batch][1])
        this_batch_len = this_batch_per + this_batch_obj
        batch_pers = pers[start_p:start_p + this_batch_per]
        batch_objs = objs[start_o:start_o + this_batch_obj]
        batch_context = context[batch]
        sp_locs_batch = spatial_locs[start:start + this_batch_len]
        sp_locs_pers_batch = sp_locs_batch[0:this_batch_per]
        sp_locs_objs_batch = sp_locs_batch[this_batch_per:this_batch_per + this_batch_obj]
        pers_objs = []
        for ind_p, i in enumerate(batch_pers):
            for ind_o, j in enumerate(batch_objs):
                sp_features = extract_spatial(sp_locs_pers_batch[ind_p], sp_locs_objs_batch[ind_o])
                pers_objs.append(torch.cat([i, j, sp_features], 0))
        pers_objs_batch = torch.stack(pers_objs)
        pairs_out.append(torch.cat([pers_objs_batch,
                                    batch_context.repeat(pers_objs_batch.size()[0], 1)], 1))
        pers_out.append(batch_pers)
        objs_out.append(batch_objs)
        start += this_batch_len
        start_p += this_batch_per
        start_o += this_batch_obj
    return torch.cat(pairs_out), torch.cat(pers_out), torch.cat(objs_out)


def _residual_convs() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1024, 512, kernel_size=(1, 1), stride=(1, 1), bias=False),
        nn.BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True),
        nn.Conv2d(512, 512, kernel_size=(1, 1), stride=(1, 1), bias=False),
        nn.BatchNorm2d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True),
        nn.Conv2d(512, 1024, kernel_size=(1, 1), stride=(1, 1), bias=False),
        nn.BatchNorm2d(1024, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True),
        nn.ReLU(inplace=False),
    )


class OfficialVSGNet(nn.Module):
    """model.VSGNet without Conv_pretrain: the same modules under the same names."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv_people = _residual_convs()
        self.Conv_objects = _residual_convs()
        self.Conv_context = _residual_convs()
        self.conv_sp_map = nn.Sequential(
            nn.Conv2d(2, 64, kernel_size=(5, 5)),
            nn.MaxPool2d(kernel_size=(2, 2)),
            nn.Conv2d(64, 32, kernel_size=(5, 5)),
            nn.MaxPool2d(kernel_size=(2, 2)),
            nn.AvgPool2d((13, 13), padding=0, stride=(1, 1)),
        )
        self.spmap_up = nn.Sequential(nn.Linear(32, 512), nn.ReLU())
        self.lin_spmap_tail = nn.Sequential(nn.Linear(512, NUM_VERBS))
        self.peo_to_obj_w = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU())
        self.obj_to_peo_w = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU())
        self.lin_single_head = nn.Sequential(nn.Linear(LIN_SIZE * 3 + 4, 1024),
                                             nn.Linear(1024, 512), nn.ReLU())
        self.lin_single_tail = nn.Sequential(nn.Linear(512, 1))
        self.lin_visual_head = nn.Sequential(nn.Linear(LIN_SIZE * 3 + 4, 1024),
                                             nn.Linear(1024, 512), nn.ReLU())
        self.lin_visual_tail = nn.Sequential(nn.Linear(512, NUM_VERBS))
        self.lin_graph_head = nn.Sequential(nn.Linear(LIN_SIZE * 2, 1024), nn.Linear(1024, 512),
                                            nn.ReLU())
        self.lin_graph_tail = nn.Sequential(nn.Linear(512, NUM_VERBS))
        self.sigmoid = nn.Sigmoid()

    def forward(self, out1: torch.Tensor, dets: Sequence[ImageDetections]):
        """[lin_visual, lin_single, lin_graph, lin_att] of every pair, image by image."""
        pairs_info = [[len(d.persons), len(d.objects)] for d in dets]
        rois_people, rois_objects, spatial_locs, union = get_pool_loc(out1, dets, size=POOL_SIZE)
        x, y = out1.size()[2], out1.size()[3]
        hum_pool = nn.AvgPool2d(POOL_SIZE, padding=0, stride=(1, 1))
        obj_pool = nn.AvgPool2d(POOL_SIZE, padding=0, stride=(1, 1))
        context_pool = nn.AvgPool2d((x, y), padding=0, stride=(1, 1))
        flat = lambda t: t.view(t.size()[0], -1)  # noqa: E731  (model.Flatten)

        out2_people = flat(hum_pool(self.Conv_people(rois_people) + rois_people))
        out2_objects = flat(obj_pool(self.Conv_objects(rois_objects) + rois_objects))
        out2_context = flat(context_pool(self.Conv_context(out1) + out1))
        out2_union = self.spmap_up(flat(self.conv_sp_map(union)))

        pairs, people, objects_only = pairing(out2_people, out2_objects, out2_context,
                                              spatial_locs, pairs_info)
        lin_single = self.lin_single_tail(self.lin_single_head(pairs) * out2_union)
        interaction_prob = self.sigmoid(lin_single)

        people_f, objects_f, pairs_f = [], [], []
        start_p = start_o = start_c = 0
        for l_info in pairs_info:
            n_p, n_o = int(l_info[0]), int(l_info[1])
            people_this_batch = people[start_p:start_p + n_p]
            objects_this_batch = objects_only[start_o:start_o + n_o]
            interaction_prob_this_batch = interaction_prob[start_c:start_c + n_o * n_p]
            if n_o == 0:
                people_this_batch_r = people_this_batch
                objects_this_batch_r = objects_only[start_o:start_o + n_o][0].view([1, 1024])
            else:
                adj_l = [probs for probs in interaction_prob_this_batch]
                adj_po = torch.cat(adj_l).view(len(adj_l), 1)
                adj_op = adj_po
                people_this_batch_r = people_this_batch + torch.mm(
                    adj_po.view([n_p, n_o]), self.peo_to_obj_w(objects_this_batch))
                objects_this_batch_r = objects_this_batch + torch.mm(
                    adj_op.view([n_p, n_o]).t(), self.obj_to_peo_w(people_this_batch))
            people_f.append(people_this_batch_r)
            objects_f.append(objects_this_batch_r)
            pairs_f.append(torch.stack([torch.cat((i, j)) for i in people_this_batch_r
                                        for j in objects_this_batch_r]))
            start_p += n_p
            start_o += n_o
            start_c += n_p * n_o
        pairs_graph = torch.cat(pairs_f)

        lin_visual = self.lin_visual_tail(self.lin_visual_head(pairs) * out2_union)
        lin_graph = self.lin_graph_tail(self.lin_graph_head(pairs_graph) * out2_union)
        lin_att = self.lin_spmap_tail(out2_union)
        return [lin_visual, lin_single, lin_graph, lin_att]


def lis(x: np.ndarray, t: float, k: float, w: float) -> np.ndarray:
    """train_test.LIS (from the Transferable Interactiveness Network code)."""
    return t / (1 + np.exp(k - w * x))


def extend(inputt: np.ndarray, extend_number: int) -> np.ndarray:
    """train_test.extend: each row repeated ``extend_number`` times (a human over its objects)."""
    res = np.zeros([1, np.shape(inputt)[-1]])
    for a in inputt:
        res = np.concatenate([res, np.repeat(a.reshape(1, np.shape(inputt)[-1]), extend_number,
                                             axis=0)], axis=0)
    return res[1:]


def extend_object(inputt: np.ndarray, extend_number: int) -> np.ndarray:
    """train_test.extend_object: the whole list repeated ``extend_number`` times."""
    res = np.zeros([1, np.shape(inputt)[-1]])
    res = np.concatenate([res, np.array(inputt.tolist() * extend_number)], axis=0)
    return res[1:]


def scores_and_loss(outputs, dets: Sequence[ImageDetections], labels: torch.Tensor,
                    mask_t: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """train_test.train_test, one iteration: the final HOI-verb scores (P, 117) (the four
    sigmoids, LIS 8.3/12/10 of both detection scores, the object -> verb mask) and the loss
    ``sum BCE(product, labels) / (images x 117)``."""
    sigmoid = nn.Sigmoid()
    outputs, outputs_single, outputs_combine, outputs_gem = outputs
    persons_score_extended = np.zeros([1, 1])
    objects_score_extended = np.zeros([1, 1])
    class_ids_extended = np.zeros([1, 1])
    for det in dets:
        n_p, n_o = len(det.persons), len(det.objects)
        persons_score_extended = np.concatenate([persons_score_extended, extend(
            np.array(det.person_scores).reshape(n_p, 1), n_o)])
        objects_score_extended = np.concatenate([objects_score_extended, extend_object(
            np.array(det.object_scores).reshape(n_o, 1), n_p)])
        class_ids_extended = np.concatenate([class_ids_extended, extend_object(
            np.array(det.object_classes).reshape(n_o, 1), n_p)])
    persons_score_extended = lis(persons_score_extended, 8.3, 12, 10)
    objects_score_extended = lis(objects_score_extended, 8.3, 12, 10)
    index_mask = class_ids_extended[1:].reshape(len(class_ids_extended[1:]),).astype("int32")
    loss_mask = mask_t[index_mask]
    hum_obj_mask = torch.Tensor(objects_score_extended[1:] * persons_score_extended[1:]
                                * loss_mask)
    product = (sigmoid(outputs) * sigmoid(outputs_combine) * sigmoid(outputs_single)
               * hum_obj_mask * sigmoid(outputs_gem))
    n_b = len(dets) * NUM_VERBS
    lossf = torch.sum(nn.BCELoss(reduction="none")(product, labels.float())) / n_b
    return product, lossf


# official parameter/buffer name prefix -> the project's (hoi.models.heads.vsgnet.VSGNet)
OFFICIAL_TO_PROJECT = {
    "Conv_people.": "human_block.body.",
    "Conv_objects.": "object_block.body.",
    "Conv_context.": "context_block.body.",
    "conv_sp_map.": "spatial.convs.",
    "spmap_up.": "spatial.up.",
    "lin_spmap_tail.0.": "spatial_tail.",
    "peo_to_obj_w.": "object_to_human.",
    "obj_to_peo_w.": "human_to_object.",
    "lin_single_head.": "interaction_head.",
    "lin_single_tail.0.": "interaction_tail.",
    "lin_visual_head.": "visual_head.",
    "lin_visual_tail.0.": "visual_tail.",
    "lin_graph_head.": "graph_head.",
    "lin_graph_tail.0.": "graph_tail.",
}
# the official main.py's optimiser groups: these modules train at the fixed spatial rate
OFFICIAL_SPATIAL_MODULES = ("conv_sp_map", "spmap_up")


def project_name(official: str) -> str:
    """The project's name of an official parameter or buffer."""
    for old, new in OFFICIAL_TO_PROJECT.items():
        if official.startswith(old):
            return new + official[len(old):]
    raise KeyError(official)
