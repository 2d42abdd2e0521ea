package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"
)

// ImageConfig is the part of an image config a test cares about.
type ImageConfig struct {
	Env []string
	Cmd []string
	// DockerManifest adds the manifest.json of `docker save` archives,
	// which dockerd's image load needs where it does not keep images in
	// containerd (with userns-remap, say).
	DockerManifest bool
}

// OCI media types, written out to keep the harness free of image-spec.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type blob struct {
	desc descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{desc: descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}, data: data}
}

// WriteOCIImage writes an OCI image layout tar at tarPath holding one
// image named ref (e.g. docker.io/library/minitest:latest) whose single
// gzip layer is the content of rootfsDir.
func WriteOCIImage(rootfsDir, tarPath, ref string, cfg ImageConfig) error {
	layerTar, err := tarDir(rootfsDir)
	if err != nil {
		return err
	}
	diffID := sha256.Sum256(layerTar)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layerTar); err != nil {
		return fmt.Errorf("image %s: compress layer: %w", ref, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("image %s: compress layer: %w", ref, err)
	}
	layer := newBlob(mediaTypeLayerGz, gz.Bytes())

	plat := platform{Architecture: runtime.GOARCH, OS: "linux"}
	configJSON, err := json.Marshal(map[string]any{
		"architecture": plat.Architecture,
		"os":           plat.OS,
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config":       map[string]any{"Env": cfg.Env, "Cmd": cfg.Cmd},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diffID[:])}},
	})
	if err != nil {
		return fmt.Errorf("image %s: config: %w", ref, err)
	}
	config := newBlob(mediaTypeConfig, configJSON)

	manifestJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        config.desc,
		"layers":        []descriptor{layer.desc},
	})
	if err != nil {
		return fmt.Errorf("image %s: manifest: %w", ref, err)
	}
	manifest := newBlob(mediaTypeManifest, manifestJSON)
	mdesc := manifest.desc
	mdesc.Platform = &plat
	mdesc.Annotations = map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": "latest",
	}
	indexJSON, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests":     []descriptor{mdesc},
	})
	if err != nil {
		return fmt.Errorf("image %s: index: %w", ref, err)
	}

	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
	}
	blobPath := func(b blob) string { return "blobs/sha256/" + b.desc.Digest[len("sha256:"):] }
	for _, b := range []blob{layer, config, manifest} {
		entries = append(entries, struct {
			name string
			data []byte
		}{blobPath(b), b.data})
	}
	if cfg.DockerManifest {
		dockerJSON, err := json.Marshal([]map[string]any{{
			"Config": blobPath(config), "RepoTags": []string{ref}, "Layers": []string{blobPath(layer)},
		}})
		if err != nil {
			return fmt.Errorf("image %s: manifest.json: %w", ref, err)
		}
		entries = append(entries, struct {
			name string
			data []byte
		}{"manifest.json", dockerJSON})
	}
	for _, e := range entries {
		if err := add(e.name, e.data); err != nil {
			return fmt.Errorf("image %s: write %s: %w", ref, e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	if err := os.WriteFile(tarPath, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}

// tarDir archives dir with root ownership and fixed times, so the layer
// digest depends on content only.
func tarDir(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, err)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, path := range paths {
		info, err := os.Lstat(path)
		if err != nil {
			return nil, fmt.Errorf("layer from %s: %w", dir, err)
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return nil, fmt.Errorf("layer from %s: %w", dir, err)
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil, fmt.Errorf("layer from %s: %s: %w", dir, path, err)
		}
		rel, _ := filepath.Rel(dir, path)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer from %s: %s: %w", dir, path, err)
		}
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("layer from %s: %w", dir, err)
			}
			if _, err := tw.Write(data); err != nil {
				return nil, fmt.Errorf("layer from %s: %s: %w", dir, path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer from %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// ImportImage imports an OCI layout tar written by WriteOCIImage and
// unpacks it for the default snapshotter.
func (c *Containerd) ImportImage(ctx context.Context, tarPath string) error {
	res := c.Ctr(ctx, nil, "images", "import", tarPath)
	if res.ExitCode != 0 {
		return fmt.Errorf("import %s into containerd %s: %s", tarPath, c.Version.Name, res)
	}
	return nil
}
