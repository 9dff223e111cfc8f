// A FaceService client in Go, built from protos/ by protoc-gen-go and protoc-gen-go-grpc, as a third party
// would: enroll a photo into a new gallery, identify another photo of the person, and read a refusal's status.
// Usage: client ADDRESS GALLERY ENROLL_PHOTO QUERY_PHOTO (token in FINDFACE_TOKEN); prints one JSON line per step.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	v1 "findface-grpc/findface_grpc/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func report(step string, fields map[string]interface{}) {
	fields["step"] = step
	line, _ := json.Marshal(fields)
	fmt.Println(string(line))
}

func main() {
	address, gallery := os.Args[1], os.Args[2]
	enroll, err := os.ReadFile(os.Args[3])
	if err != nil {
		panic(err)
	}
	query, err := os.ReadFile(os.Args[4])
	if err != nil {
		panic(err)
	}
	conn, err := grpc.Dial(address, grpc.WithInsecure(), grpc.WithBlock(), grpc.WithTimeout(10*time.Second))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := v1.NewFaceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Token "+os.Getenv("FINDFACE_TOKEN"))

	if _, err := client.CreateGallery(ctx, &v1.CreateGalleryRequest{Name: gallery}); err != nil {
		report("create_gallery", map[string]interface{}{"code": status.Code(err).String(), "message": status.Convert(err).Message()})
		os.Exit(1)
	}
	created, err := client.CreateFace(ctx, &v1.CreateFaceRequest{
		Image: &v1.ImageSource{Source: &v1.ImageSource_Content{Content: enroll}}, Meta: "go-client", Galleries: []string{gallery}})
	if err != nil {
		report("create_face", map[string]interface{}{"code": status.Code(err).String(), "message": status.Convert(err).Message()})
		os.Exit(1)
	}
	report("create_face", map[string]interface{}{"id": created.Faces[0].Id, "galleries": created.Faces[0].Galleries})

	found, err := client.Identify(ctx, &v1.IdentifyRequest{
		Query: &v1.IdentifyRequest_Image{Image: &v1.ImageSource{Source: &v1.ImageSource_Content{Content: query}}}, Gallery: gallery, N: 3})
	if err != nil {
		report("identify", map[string]interface{}{"code": status.Code(err).String(), "message": status.Convert(err).Message()})
		os.Exit(1)
	}
	match := found.Results[0].Matches[0]
	report("identify", map[string]interface{}{"id": match.Face.Id, "meta": match.Face.Meta, "confidence": match.Confidence,
		"shards_answered": found.ShardsAnswered, "shards_total": found.ShardsTotal})

	_, err = client.Identify(ctx, &v1.IdentifyRequest{
		Query: &v1.IdentifyRequest_Image{Image: &v1.ImageSource{Source: &v1.ImageSource_Content{Content: query}}}, Gallery: "no-such-gallery"})
	reasons := []string{}
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			reasons = append(reasons, info.Domain+"/"+info.Reason)
		}
	}
	report("refused", map[string]interface{}{"code": status.Code(err).String(), "message": status.Convert(err).Message(), "reasons": reasons})
}
