// The static Space's logic. transformers.js (lib/, copied from its npm package) loads the model's int8 file from the
// Hub named in config.js and classifies a 28×28 gray image made from an upload or a drawing. Every failure becomes
// one line in #message: a bad upload is the user's to fix, never a stack trace.
import { env, pipeline, RawImage } from "./lib/transformers.min.js";
import { HUB, MODEL } from "./config.js";

const SIDE = 28; // the model's input: Fashion-MNIST's 28×28 gray images, light object on black
const MAX_BYTES = 20_000_000; // a photo is a few MB; more is not a picture of a garment
const MAX_PIXELS = 50_000_000; // checked before the image is drawn (decoded): a small file may claim huge sides

env.remoteHost = HUB;
env.allowLocalModels = false;
// onnxruntime-web's WebAssembly runtime from lib/ too: by default it would come from a CDN.
env.backends.onnx.wasm.wasmPaths = {
  mjs: new URL("lib/ort-wasm-simd-threaded.mjs", import.meta.url).href,
  wasm: new URL("lib/ort-wasm-simd-threaded.wasm", import.meta.url).href,
};
env.backends.onnx.wasm.numThreads = 1; // threads need cross-origin isolation, which a Space page does not have

const $ = (id) => document.getElementById(id);
const say = (text) => { $("message").textContent = text; };
const oneLine = (error) => String(error?.message ?? error).split("\n")[0].slice(0, 300);

$("model-link").textContent = MODEL;
$("model-link").href = `${HUB}${MODEL}`;
// The browser's defaults: device "wasm", dtype "q8", so onnx/model_quantized.onnx (the int8 export).
const classifier = pipeline("image-classification", MODEL, { device: "wasm", dtype: "q8" });
classifier.then(
  () => { $("status").textContent = `Ready: ${MODEL} (int8), transformers.js in this page.`; },
  (error) => { $("status").textContent = `The model could not be loaded: ${oneLine(error)}`; },
);

// Whatever escapes the handlers below is still one line on the page.
window.addEventListener("error", (event) => say(`Something went wrong: ${oneLine(event.error ?? event.message)}`));
window.addEventListener("unhandledrejection", (event) => say(`Something went wrong: ${oneLine(event.reason)}`));

/** The gray 28×28 pixels of a drawable (image or canvas), composited over black as Fashion-MNIST's background. */
function grayPixels(source, invert) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = SIDE;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = invert ? "#fff" : "#000"; // transparent pixels become background after the inversion too
  context.fillRect(0, 0, SIDE, SIDE);
  context.imageSmoothingQuality = "high";
  context.drawImage(source, 0, 0, SIDE, SIDE);
  const rgba = context.getImageData(0, 0, SIDE, SIDE).data;
  const gray = new Uint8ClampedArray(SIDE * SIDE);
  for (let i = 0; i < gray.length; i++) {
    const value = Math.round((rgba[4 * i] + rgba[4 * i + 1] + rgba[4 * i + 2]) / 3);
    gray[i] = invert ? 255 - value : value;
  }
  return gray;
}

function show(gray) {
  const view = $("view").getContext("2d");
  const image = new ImageData(SIDE, SIDE);
  for (let i = 0; i < gray.length; i++) image.data.set([gray[i], gray[i], gray[i], 255], 4 * i);
  const small = document.createElement("canvas");
  small.width = small.height = SIDE;
  small.getContext("2d").putImageData(image, 0, 0);
  view.imageSmoothingEnabled = false;
  view.drawImage(small, 0, 0, $("view").width, $("view").height);
}

async function classify(gray) {
  say("");
  show(gray);
  $("prediction").replaceChildren();
  const results = await (await classifier)(new RawImage(gray, SIDE, SIDE, 1), { top_k: 5 });
  for (const { label, score } of results) {
    const item = document.createElement("li");
    item.textContent = `${label}: ${(100 * score).toFixed(1)}%`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(150 * score)}px`;
    item.append(bar);
    $("prediction").append(item);
  }
}

/** An uploaded file as an image element, or a one-line reason why it is not one. */
async function readImage(file) {
  if (file.size === 0) throw new Error(`${file.name} is empty: choose an image file (PNG, JPEG, WebP, ...).`);
  if (file.size > MAX_BYTES) {
    throw new Error(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; images up to ${MAX_BYTES / 1e6} MB are accepted.`);
  }
  if (file.type && !file.type.startsWith("image/")) {
    throw new Error(`${file.name} is not an image (${file.type}): choose a PNG, JPEG, WebP, ... file.`);
  }
  const url = URL.createObjectURL(file);
  try {
    const image = new Image();
    image.src = url;
    try {
      await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; });
    } catch {
      throw new Error(`${file.name} could not be read as an image: choose a PNG, JPEG, WebP, ... file.`);
    }
    if (image.naturalWidth * image.naturalHeight > MAX_PIXELS) {
      throw new Error(`${file.name} is ${image.naturalWidth}×${image.naturalHeight} pixels, more than the ${MAX_PIXELS / 1e6} million accepted.`);
    }
    if (!image.naturalWidth || !image.naturalHeight) throw new Error(`${file.name} has no pixels.`);
    await image.decode();
    return image;
  } finally {
    URL.revokeObjectURL(url);
  }
}

$("file").addEventListener("change", async () => {
  const file = $("file").files[0];
  if (!file) return;
  try {
    await classify(grayPixels(await readImage(file), $("invert").checked));
  } catch (error) {
    $("prediction").replaceChildren();
    say(oneLine(error));
  }
});

// Drawing: white strokes on black, as Fashion-MNIST's images are.
const draw = $("draw");
const pen = draw.getContext("2d");
function clear() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, draw.width, draw.height);
}
clear();
let drawing = false;
draw.addEventListener("pointerdown", (event) => {
  drawing = true;
  draw.setPointerCapture(event.pointerId);
  pen.beginPath();
  pen.moveTo(event.offsetX, event.offsetY);
});
draw.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  pen.lineWidth = 22;
  pen.lineCap = pen.lineJoin = "round";
  pen.strokeStyle = "#fff";
  pen.lineTo(event.offsetX, event.offsetY);
  pen.stroke();
});
draw.addEventListener("pointerup", () => { drawing = false; });
$("clear").addEventListener("click", clear);
$("classify-drawing").addEventListener("click", async () => {
  try {
    await classify(grayPixels(draw, false));
  } catch (error) {
    say(oneLine(error));
  }
});
