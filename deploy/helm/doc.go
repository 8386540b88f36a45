// Package helm holds kata-deploy's Helm chart (kata-deploy/), embedded, and
// renders, lints and installs it with the Helm Go SDK. The plain manifests
// in deploy/ are generated from the chart's default render by
// PlainManifests, so the chart is their single source.
package helm
