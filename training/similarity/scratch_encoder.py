"""A small face encoder trained from scratch, sized for a 2-core CPU.

64x64 RGB chips (the central 120x120 of the aligned 150x150 chip, downscaled: the face without
most of dlib's 25% padding) -> four conv stages (32, 64, 128, 256 channels, 3x3, batch norm,
ReLU, 2x2 max pool after the first three) -> global average pool -> 128-d -> batch norm -> L2
normalised. About 0.4 M parameters and 60 M multiply-adds per image, so one batch of 64 trains in
well under a second on one thread. Unit-norm outputs put every squared distance in [0, 4], which
makes the triplet margin alpha mean the same thing throughout training.

The batch norm before the unit normalisation (the "BNNeck" of Luo et al. 2019) centres every
output dimension. Without it the pooled post-ReLU features make all untrained embeddings point
the same way: the squared distances are all near 0 and the cheapest way to lower the semi-hard
loss is to spread the embeddings out, whoever they belong to (the batch-all loss *rose* for five
epochs with one seed). Centred, the embeddings start spread over the sphere and every selector
has only identity left to learn (docs/similarity.md).
"""

from __future__ import annotations

import cv2
import keras
import numpy as np

INPUT_SIZE = 64
CROP = (15, 135)
"""Rows/columns of the 150 px chip kept before downscaling."""


def scratch_chips(chips150: np.ndarray) -> np.ndarray:
    """(N,150,150,3) uint8 aligned chips -> (N,64,64,3) uint8 inputs of the scratch encoder."""
    low, high = CROP
    return (
        np.stack(
            [
                cv2.resize(
                    chip[low:high, low:high], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA
                )
                for chip in chips150
            ]
        )
        if len(chips150)
        else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    )


def build_scratch_encoder(embedding_size: int = 128, seed: int = 0) -> keras.Model:
    """(None, 64, 64, 3) float32 in [0, 1] -> (None, 128) unit vectors."""
    initializer = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="rgb01")
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
    for stage, filters in enumerate((32, 64, 128, 256)):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_initializer=initializer
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if stage < 3:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(
        embedding_size, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
    )(x)
    x = keras.layers.BatchNormalization(name="centred")(x)
    outputs = keras.layers.UnitNormalization(name="embedding")(x)
    return keras.Model(inputs, outputs, name="scratch_face_encoder")
