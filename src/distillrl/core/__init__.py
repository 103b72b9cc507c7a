"""Layer 1, the foundation: what every other layer may use and that knows nothing of models or runs.

- `errors`: UserError (and ConfigError), the one-line errors the command line shows;
- `files`: atomic writes, the umask, capped reads, one-line write failures;
- `interrupts`: SIGTERM / SIGINT as a request to stop after the current step;
- `distributed`: the process group of a data-parallel run (rank, world size, agreement);
- `sharding`: FSDP2 sharding of a model and its full state dict.
"""
