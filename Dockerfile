# GPU image for paper-scale meta-training:
#   docker build -t hf-l3rs .
#   docker run --gpus all -v $PWD/runs:/app/runs -e HF_TOKEN hf-l3rs \
#       accelerate launch --multi_gpu --num_processes 8 examples/metatrain.py \
#       --config examples/configs/resnet34-imagenet.yaml
# ImageNet-1k is gated on the Hub: pass HF_TOKEN and accept its terms first. Pretrain the
# ResNet-34 on the pretrain classes first (hf-l3rs pretrain with --model resnet34 on the
# imagenet-1k preset) and set family_kwargs.checkpoint in the config.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential libcairo2 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hf_l3rs ./hf_l3rs
COPY trainer_plugins ./trainer_plugins
COPY hub_cards ./hub_cards
COPY examples ./examples
# The image keeps its own CUDA torch; the package's ranges are open (torch>=2.4).
RUN pip install --no-cache-dir -e ".[vision,hf,plots]"
ENV HF_HUB_ENABLE_HF_TRANSFER=0 TOKENIZERS_PARALLELISM=false
CMD ["accelerate", "launch", "examples/metatrain.py", "--config", "examples/configs/resnet34-imagenet.yaml"]
