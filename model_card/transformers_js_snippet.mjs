import { pipeline } from "@huggingface/transformers";

// Node loads onnx/model.onnx (dtype "fp32"), a browser onnx/model_quantized.onnx (dtype "q8");
// pass { dtype: "fp16" } for onnx/model_fp16.onnx.
const classify = await pipeline("image-classification", "MODEL_ID");
const [best] = await classify("sneaker.png");
console.log(best.label, best.score);
