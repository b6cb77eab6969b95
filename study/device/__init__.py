"""Carry a slice of a grid to a lent GPU machine and bring its results back (``python -m study.device``; usage and
the pack folder's layout in study.device.cli).

The device machine has no duckdb, no weight or dataset packages and no ../shared/datasets, and one call carries at
most 64 MiB and brings back at most 8 files, so a pack holds exactly what its runs need and one archive comes back:

  common      DeviceError, the call's size limit, the bytes that travel with a call
  selection   the grid's runs not yet in the local DuckDB
  payload     fp16 weights, packed package datasets, copied ImageFolder datasets, and their size estimates
  plan        whether a selection fits one call, and pack commands for parts that do
  runscript   env.sh and run.sh
  pack        builds the pack folder and its manifest
  ingest      safe extraction of the results archive, ingest into DuckDB
  cli         the command line
"""
from study.device.cli import main
from study.device.common import DeviceError
from study.device.ingest import extract_archive, ingest_archive
from study.device.pack import describe_pack, pack
from study.device.payload import Encoding, copy_folder_dataset, fp16_weights, pack_package_dataset

__all__ = ["DeviceError", "Encoding", "copy_folder_dataset", "describe_pack", "extract_archive", "fp16_weights",
           "ingest_archive", "main", "pack", "pack_package_dataset"]
