"""Meta-train L3RS with NES.

    accelerate launch examples/metatrain.py --config examples/configs/cpu-tiny.yaml
    # two CPU processes (one thread each):
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no examples/metatrain.py --config ... --threads 1
"""

from hf_l3rs.meta.cli import main

if __name__ == "__main__":
    main()
