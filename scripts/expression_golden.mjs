// The golden outputs of tests/extractor/test_attributes.py: face-api's expression net run by the npm package's
// own TF.js build (CPU backend) on two fixed 112x112 inputs made by formula, the same as the test's
// golden_inputs(). Needs only Node and the package unpacked:
//   npm pack @vladmandic/face-api@1.7.15 && mkdir face-api && tar xzf vladmandic-face-api-1.7.15.tgz -C face-api
//   node scripts/expression_golden.mjs face-api/package
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = path.resolve(process.argv[2]);
// The browser build runs in Node once it believes it is in a browser (its Node build needs tfjs-node).
globalThis.window = globalThis;
globalThis.document = { createElement: () => ({}) };
const faceapi = await import(pathToFileURL(path.join(root, "dist/face-api.esm.js")).href);
const tf = faceapi.tf;
await tf.setBackend("cpu");
await tf.ready();

const manifest = JSON.parse(fs.readFileSync(path.join(root, "model/face_expression_model-weights_manifest.json")));
const bin = fs.readFileSync(path.join(root, "model/face_expression_model.bin"));
const net = new faceapi.FaceExpressionNet();
net.loadFromWeightMap(tf.io.decodeWeights(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length),
                                          manifest[0].weights));

function image(pixel) {
  const values = new Float32Array(112 * 112 * 3);
  for (let y = 0; y < 112; y++) for (let x = 0; x < 112; x++) values.set(pixel(x, y), (y * 112 + x) * 3);
  return tf.tensor4d(values, [1, 112, 112, 3]);
}
const inputs = [
  image((x, y) => [x * 2.2, y * 2.2, (x + y) * 1.1]),
  image((x, y) => [(x * 37 + y * 11) % 256, (x * 5 + y * 29) % 256, (x * y) % 256]),
];
const out = [];
for (const input of inputs) out.push(Array.from((await net.forward(input)).dataSync()));
console.log(JSON.stringify(out));
