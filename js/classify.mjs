// Classify raw 28×28 gray images with transformers.js, as a user of the Hub's JavaScript library would: the stock
// image-classification pipeline with its default options (in Node: fp32, onnx/model.onnx, onnxruntime-node on CPU).
//
//   node classify.mjs local FOLDER MODEL_NAME IMAGES OUT      env.localModelPath = FOLDER, no remote models
//   node classify.mjs hub   ENDPOINT  REPO_ID    IMAGES OUT   env.remoteHost = ENDPOINT/, no local models
//
// IMAGES: N×28×28 bytes (row-major, one byte a pixel, as Fashion-MNIST's IDX files hold them after their header).
// OUT: one JSON array of the top-1 label of each image, in order. Written by tests/test_transformers_js.py.
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { env, pipeline, RawImage } from "@huggingface/transformers";

const [source, where, model, imagesPath, outPath] = process.argv.slice(2);
const SIDE = 28;
const BATCH = 100;

if (source === "local") {
  env.localModelPath = where;
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
} else if (source === "hub") {
  env.remoteHost = where.endsWith("/") ? where : `${where}/`;
  env.allowLocalModels = false;
  env.allowRemoteModels = true;
  env.cacheDir = mkdtempSync(join(tmpdir(), "transformers-js-cache-")); // never a cache from an earlier run
} else {
  throw new Error(`unknown source ${source}: local or hub`);
}

const bytes = readFileSync(imagesPath);
const count = bytes.length / (SIDE * SIDE);
const classify = await pipeline("image-classification", model);
const labels = [];
for (let start = 0; start < count; start += BATCH) {
  const images = [];
  for (let i = start; i < Math.min(start + BATCH, count); i++) {
    const pixels = new Uint8ClampedArray(bytes.subarray(i * SIDE * SIDE, (i + 1) * SIDE * SIDE));
    images.push(new RawImage(pixels, SIDE, SIDE, 1));
  }
  const results = await classify(images); // top_k 1 (the default): one [{label, score}] per image
  for (const result of results) labels.push(result[0].label);
}
writeFileSync(outPath, JSON.stringify(labels));
console.log(`classified ${labels.length} images with ${model} (${source})`);
