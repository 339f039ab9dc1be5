"""Files in and out: the original's weight shards, joblib and safetensors parameters, and sample files for tests
and benchmarks."""
