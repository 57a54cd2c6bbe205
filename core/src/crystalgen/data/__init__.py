"""Crystals in and out of the framework (docs/data.md). Modules, imported on demand to keep start-up light:

crystal        Structure <-> torch_geometric Data conventions
io             CIF / extxyz reading and writing
records        CrystalRecord, Skipped, LoadedSplit, DataError
registry       DatasetSpec, builtin_datasets(), get_dataset(name_or_path)
benchmarks     facts about the CDVAE benchmark files; the data root
tabular        crystal tables (CSV with a cif column); files: CIF / extxyz files and folders
embedded       the embedded default dataset (prototypes: its tables)
preprocess     prepare_split: a model's transform over a split, cached
cache          the on-disk cache format; record_store: records <-> plain tensors; parallel: worker processes
fetch          verified download of the official benchmark files
statistics     what a split holds (crystalgen data info)
"""
