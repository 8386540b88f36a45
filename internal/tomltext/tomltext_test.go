package tomltext

import (
	"testing"

	"github.com/pelletier/go-toml/v2"
	"gotest.tools/v3/assert"
	is "gotest.tools/v3/assert/cmp"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []string{"plain", "io.containerd.grpc.v1.cri", `quote"back\slash`, "tab\tnl\ncr\r", "ünïcode", ""} {
		var got map[string]any
		assert.NilError(t, toml.Unmarshal([]byte(Key(s)+" = "+String(s)), &got), s)
		assert.Check(t, is.DeepEqual(got, map[string]any{s: s}))
	}
	assert.Check(t, is.Equal(DottedKey("plugins", "io.containerd.grpc.v1.cri", "containerd"), `plugins."io.containerd.grpc.v1.cri".containerd`))
	assert.Check(t, is.Equal(StringArray([]string{"a", "b"}), `["a", "b"]`))
}
