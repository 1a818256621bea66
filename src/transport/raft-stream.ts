// The long-lived raft message stream between two managers: one client-streaming call per peer link
// carries every RaftMessageBatch, so a message costs one HTTP/2 DATA frame instead of a whole unary
// call (new stream, headers, deadline timer, authorization, trailers). A 3-manager write used to take
// about ten unary calls on the leader, which made its CPU, not the network or the disk, the limit.
// proto/shoal/v1/raft.proto does not declare the method yet, so its definition is written out here
// from the generated message codecs; it lives under the Raft service's path prefix.
import * as grpc from "@grpc/grpc-js";
import { RaftAck, RaftMessageBatch } from "../proto/shoal/v1/raft.js";

export const RAFT_STREAM_PATH = "/shoal.v1.Raft/StreamRaftMessages";

/** The service definition to register next to RaftService (`server.addService`). */
export const RaftStreamService = {
  streamRaftMessages: {
    path: RAFT_STREAM_PATH,
    requestStream: true,
    responseStream: false,
    requestSerialize: (value: RaftMessageBatch): Buffer => Buffer.from(RaftMessageBatch.encode(value).finish()),
    requestDeserialize: (value: Buffer): RaftMessageBatch => RaftMessageBatch.decode(value),
    responseSerialize: (value: RaftAck): Buffer => Buffer.from(RaftAck.encode(value).finish()),
    responseDeserialize: (value: Buffer): RaftAck => RaftAck.decode(value),
    originalName: "streamRaftMessages",
  },
} as const satisfies grpc.ServiceDefinition;

export interface RaftStreamServer extends grpc.UntypedServiceImplementation {
  streamRaftMessages: grpc.handleClientStreamingCall<RaftMessageBatch, RaftAck>;
}

export interface RaftStreamClient extends grpc.Client {
  streamRaftMessages(
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: (error: grpc.ServiceError | null, response: RaftAck) => void,
  ): grpc.ClientWritableStream<RaftMessageBatch>;
}

/** Client class for `SecureChannel.client(RaftStreamClient)`. */
export const RaftStreamClient = grpc.makeGenericClientConstructor(RaftStreamService, "shoal.v1.Raft") as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => RaftStreamClient;
