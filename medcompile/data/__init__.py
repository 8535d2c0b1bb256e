"""Loading, validating and splitting medical multiple-choice datasets."""
from .formats import FORMATS, FieldMap, detect_format, parse_field_map
from .loaders import BUILTIN_DATASETS, data_dir, load_dataset, resolve_path
from .splits import SPLIT_CHOICES, medqa_dev_split, sample, shuffled, split_named, train_dev_split
from .validate import Dataset, DatasetError, LoadReport, RowProblem, Source, fingerprint_questions

__all__ = [
    "BUILTIN_DATASETS", "FORMATS", "SPLIT_CHOICES", "Dataset", "DatasetError", "FieldMap", "LoadReport",
    "RowProblem", "Source", "data_dir", "detect_format", "fingerprint_questions", "load_dataset",
    "medqa_dev_split", "parse_field_map", "resolve_path", "sample", "shuffled", "split_named",
    "train_dev_split",
]
