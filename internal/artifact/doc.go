// Package artifact stores content-addressed artifacts (protocol frames) for the cluster.
package artifact
