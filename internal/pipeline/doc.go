// Package pipeline runs a whole merge in one process: it checks the spec and every input
// (internal/inputs), builds the calibration sequences, captures feature statistics layer by
// layer, solves every site with the chosen method and schedule, and writes the merged adapter,
// its model card and the merge report (internal/output). The same units (Gram capture of sites
// under a model state, per-site solves) are what cluster workers will run.
package pipeline
