// A Node.js client of a findface-grpc gateway, as a user of another language writes one: the contracts loaded
// from protos/ (the import root) with @grpc/proto-loader, calls made with @grpc/grpc-js. Run by
// tests/test_node_client.py against a launched cluster; prints one JSON object with what each call answered,
// which the Python test checks.
//
// Usage: node client.mjs '<json>' where the JSON has address, token, protoRoot, gallery, enroll (a list of
// {file, person}), query (a photo file), multiFace (a photo with several faces).
import { readFileSync } from "node:fs";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const args = JSON.parse(process.argv[2]);
const loaderOptions = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const gatewayPackage = protoLoader.loadSync("findface_grpc/v1/gateway.proto", {
  ...loaderOptions, includeDirs: [args.protoRoot],
});
const { FaceService } = grpc.loadPackageDefinition(gatewayPackage).findface_grpc.v1;

// Health, reflection v1 and google.rpc's error details are standard gRPC contracts whose .proto files this
// repository does not ship; a real client takes them from its language's googleapis package. The few fields used
// here are declared inline, with the official names and numbers.
const standard = protobuf.Root.fromJSON({
  nested: {
    grpc: { nested: {
      health: { nested: { v1: { nested: {
        HealthCheckRequest: { fields: { service: { type: "string", id: 1 } } },
        HealthCheckResponse: {
          fields: { status: { type: "ServingStatus", id: 1 } },
          nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
        },
        Health: { methods: { Check: { requestType: "HealthCheckRequest", responseType: "HealthCheckResponse" } } },
      } } } },
      reflection: { nested: { v1: { nested: {
        ServerReflectionRequest: { fields: {
          file_containing_symbol: { type: "string", id: 4 }, list_services: { type: "string", id: 7 },
        } },
        ServerReflectionResponse: { fields: {
          file_descriptor_response: { type: "FileDescriptorResponse", id: 4 },
          list_services_response: { type: "ListServiceResponse", id: 6 },
        } },
        FileDescriptorResponse: { fields: { file_descriptor_proto: { rule: "repeated", type: "bytes", id: 1 } } },
        ListServiceResponse: { fields: { service: { rule: "repeated", type: "ServiceResponse", id: 1 } } },
        ServiceResponse: { fields: { name: { type: "string", id: 1 } } },
        ServerReflection: { methods: { ServerReflectionInfo: {
          requestType: "ServerReflectionRequest", requestStream: true,
          responseType: "ServerReflectionResponse", responseStream: true,
        } } },
      } } } },
    } },
    google: { nested: {
      protobuf: { nested: { Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } } } },
      rpc: { nested: {
      Status: { fields: {
        code: { type: "int32", id: 1 }, message: { type: "string", id: 2 },
        details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
      } },
      ErrorInfo: { fields: {
        reason: { type: "string", id: 1 }, domain: { type: "string", id: 2 },
        metadata: { keyType: "string", type: "string", id: 3 },
      } },
      BadRequest: {
        fields: { field_violations: { rule: "repeated", type: "FieldViolation", id: 1 } },
        nested: { FieldViolation: { fields: {
          field: { type: "string", id: 1 }, description: { type: "string", id: 2 },
        } } },
      },
    } },
    } },
  },
});
const standardServices = grpc.loadPackageDefinition(protoLoader.fromJSON(standard.toJSON(), loaderOptions));

const credentials = grpc.credentials.createInsecure();
const client = new FaceService(args.address, credentials);
const health = new standardServices.grpc.health.v1.Health(args.address, credentials);
const reflection = new standardServices.grpc.reflection.v1.ServerReflection(args.address, credentials);

// Every gateway call carries the API token.
const metadata = new grpc.Metadata();
metadata.set("authorization", `Token ${args.token}`);

function call(method, request, md = metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, md, { deadline: Date.now() + 60_000 }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

// A failed call's rich error details (grpc-status-details-bin), decoded as any client would.
function richStatus(err) {
  const [bytes] = err.metadata.get("grpc-status-details-bin");
  if (!bytes) return null;
  const status = standard.lookupType("google.rpc.Status").decode(bytes);
  const out = { code: status.code, message: status.message };
  for (const detail of status.details) {
    const type = standard.lookupType(detail.type_url.split("/").pop());
    out[type.name] = type.toObject(type.decode(detail.value));
  }
  return out;
}

async function failure(method, request, md) {
  try {
    await call(method, request, md);
    return { code: "OK" };
  } catch (err) {
    const trailer = err.metadata.get("findface-error-details")[0];
    return {
      code: grpc.status[err.code], message: err.details, rich: richStatus(err),
      trailer: trailer ? JSON.parse(trailer) : null,
    };
  }
}

function reflect(request) {
  return new Promise((resolve, reject) => {
    const stream = reflection.ServerReflectionInfo();
    stream.on("data", (reply) => { resolve(reply); stream.end(); });
    stream.on("error", reject);
    stream.write(request);
  });
}

// `count` random unit vectors of `dim` float32 values, little-endian, as Descriptor.vector wants them.
function randomDescriptors(count, dim) {
  return Array.from({ length: count }, () => {
    const values = Array.from({ length: dim }, () => Math.random() - 0.5);
    const norm = Math.hypot(...values);
    const bytes = Buffer.alloc(4 * dim);
    values.forEach((v, i) => bytes.writeFloatLE(v / norm, 4 * i));
    return bytes;
  });
}

function importFaces(batches) {
  return new Promise((resolve, reject) => {
    const stream = client.ImportFaces(metadata);
    const replies = [];
    stream.on("data", (reply) => replies.push(reply.ids));
    stream.on("error", reject);
    stream.on("end", () => resolve(replies));
    for (const faces of batches) stream.write({ faces });
    stream.end();
  });
}

const out = {};
out.health = await new Promise((resolve, reject) => {
  health.Check({ service: "findface_grpc.v1.FaceService" }, (err, reply) => (err ? reject(err) : resolve(reply.status)));
});
const listed = await reflect({ list_services: "" });
out.reflectionServices = listed.list_services_response.service.map((s) => s.name);
const described = await reflect({ file_containing_symbol: "findface_grpc.v1.FaceService" });
out.reflectionFiles = described.file_descriptor_response.file_descriptor_proto.length;

out.withoutToken = await failure("ListGalleries", {}, new grpc.Metadata());
out.gallery = (await call("CreateGallery", { name: args.gallery })).name;
out.duplicateGallery = await failure("CreateGallery", { name: args.gallery });

out.enrolled = [];
for (const { file, person } of args.enroll) {
  const reply = await call("CreateFace", { image: { content: readFileSync(file) }, meta: person, galleries: [args.gallery] });
  out.enrolled.push(...reply.faces.map((f) => ({ id: f.id, meta: f.meta, galleries: f.galleries })));
}
const identified = await call("Identify", {
  image: { content: readFileSync(args.query) }, gallery: args.gallery, n: 3, threshold: { preset: "PRESET_NONE" },
});
out.identify = identified.results.map((r) => r.matches.map((m) => ({ meta: m.face.meta, confidence: m.confidence })));
out.tooManyFaces = await failure("Identify", {
  image: { content: readFileSync(args.multiFace) }, gallery: args.gallery, mf_selector: "MULTI_FACE_SELECTOR_REJECT",
});
out.badLimit = await failure("ListFaces", { gallery: args.gallery, limit: 5000 });

const status = await call("ClusterStatus", {});
out.clusterStatus = {
  shards_live: status.shards_live, shards_total: status.shards_total, face_count: status.face_count,
  extractor_live: status.extractor.live, model: status.extractor.embedder_model_id, dim: status.extractor.descriptor_dim,
};

// Two batches over one stream; the first imported descriptor must then find its own face first.
const vectors = randomDescriptors(3, status.extractor.descriptor_dim);
const descriptor = (vector) => ({ model_id: status.extractor.embedder_model_id, dim: status.extractor.descriptor_dim, vector });
out.imported = await importFaces([
  vectors.slice(0, 2).map((v, i) => ({ descriptor: descriptor(v), meta: `imported-${i}`, galleries: [args.gallery] })),
  [{ descriptor: descriptor(vectors[2]), meta: "imported-2", galleries: [args.gallery] }],
]);
const found = await call("Identify", { descriptor: descriptor(vectors[0]), gallery: args.gallery, n: 1 });
out.importedFound = found.results[0].matches.map((m) => ({ id: m.face.id, meta: m.face.meta }));

console.log(JSON.stringify(out));
client.close();
health.close();
reflection.close();
