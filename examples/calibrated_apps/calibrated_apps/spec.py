"""ModelSpecs (no TensorFlow import here: listing models stays fast)."""

from tf_parity_export import ModelSpec, TensorSig

M = "calibrated_apps.model:"

MOBILENETV2 = ModelSpec(
    name="calibrated_mobilenetv2", builder=M + "build_mobilenetv2",
    summary="MobileNetV2(alpha 0.35, 96x96, weights=None), BatchNormalization calibrated",
    inputs=(TensorSig("image", (None, 96, 96, 3)),), outputs=(TensorSig("probs", (None, 1000)),), seed=7)
EFFICIENTNETB0 = ModelSpec(
    name="calibrated_efficientnetb0", builder=M + "build_efficientnetb0",
    summary="EfficientNetB0(64x64, weights=None), BatchNormalization calibrated",
    inputs=(TensorSig("image", (None, 64, 64, 3), range=(0.0, 255.0)),), outputs=(TensorSig("probs", (None, 1000)),),
    seed=7)
RESNET50 = ModelSpec(
    name="calibrated_resnet50", builder=M + "build_resnet50",
    summary="ResNet50(64x64, weights=None), BatchNormalization calibrated",
    inputs=(TensorSig("image", (None, 64, 64, 3)),), outputs=(TensorSig("probs", (None, 1000)),), seed=7,
    # Fifty convolutions each runtime sums in its own order: at atol = rtol = 1e-5 every runtime was off by
    # 1.1e-5 to 1.5e-5 (error over the output's scale 2e-4, cosine 0.99999999), and localization found
    # no node off by itself on TF's inputs (accumulated rounding). A tolerance for a network this deep:
    atol=1e-4, rtol=1e-3)
