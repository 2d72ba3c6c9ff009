"""Data for siamcl: named data sets, class-incremental streams, image files and folders, episodes."""

from siamcl.data.datasets import DATASETS, load_dataset, stratified_split, subsample
from siamcl.data.episodes import Episode, EpisodeSampler
from siamcl.data.folders import load_image_folder
from siamcl.data.images import load_images
from siamcl.data.omniglot import OmniglotData, load_omniglot, omniglot_alphabets
from siamcl.data.streams import Task, class_incremental, classes_mask

__all__ = [
    "DATASETS",
    "Episode",
    "EpisodeSampler",
    "OmniglotData",
    "Task",
    "class_incremental",
    "classes_mask",
    "load_dataset",
    "load_image_folder",
    "load_images",
    "load_omniglot",
    "omniglot_alphabets",
    "stratified_split",
    "subsample",
]
