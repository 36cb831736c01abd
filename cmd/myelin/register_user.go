package main

import "errors"

func registerUser(args []string) error {
	return errors.New("register-user is not implemented yet")
}
