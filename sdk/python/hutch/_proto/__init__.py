"""Generated from core/api/hutch/v1/*.proto by scripts/gen_python_proto.sh.
Do not edit; run the script after changing a .proto file."""
