/** The package version; a test keeps it equal to package.json's. */
export const version: string = '0.1.0'
