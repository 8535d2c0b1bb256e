"""Programs: running module graphs and their frozen JSON form."""
from .io import ProgramFileError, dumps, from_dict, load, loads, save
from .program import Program, Result
from .schema import SCHEMA_VERSION, json_schema

__all__ = ["Program", "Result", "ProgramFileError", "load", "loads", "save", "dumps", "from_dict", "SCHEMA_VERSION",
           "json_schema"]
